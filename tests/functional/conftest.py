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


@pytest.fixture
def tmpvm(tmp_path, amber_bin):
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
