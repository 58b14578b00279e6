import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import vm as vmmod  # noqa: E402


@pytest.fixture(scope="session")
def amber_bin():
    if not os.access(vmmod.AMBER, os.X_OK):
        pytest.fail("amber is not built at %s (run make)" % vmmod.AMBER)
    return vmmod.AMBER


def kvm_missing():
    """Why no guest can run here (no usable /dev/kvm), or None."""
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
        return None
    except OSError as e:
        return "this host has no usable /dev/kvm (%s): amber cannot run a guest" % e.strerror


@pytest.fixture(scope="session")
def kvm():
    why = kvm_missing()
    if why:
        pytest.skip(why)


@pytest.fixture
def tmpvm(tmp_path, amber_bin, kvm):
    """Factory: tmpvm(args) -> Vm in a per-test directory, killed at teardown."""
    vms = []

    def make(args=(), **kw):
        d = tmp_path / ("vm%d" % len(vms))
        d.mkdir()
        v = vmmod.Vm(args, tmpdir=str(d), **kw)
        vms.append(v)
        return v

    yield make
    for v in vms:
        v.kill()
