"""The `direct-io` migration parameter: a file: migration written with O_DIRECT.

What a user checks: a background snapshot and a plain save with direct-io
restore exactly as without it (the wave invariant at the saved positions,
the restored RAM equal to the source's); while it is written the image's
descriptor really has O_DIRECT; a URI that is not file:, or a file: offset
that is not a multiple of 4096, is refused by `migrate` itself, naming the
reason, with the VM running on and no migration started; an aligned offset
works both ways; the parameter is set and shown from QMP and HMP.
"""
import os
import socket
import time

import pytest

from test_bgsnapshot import drop_images, snapshot_round  # noqa: F401 (autouse fixture)
from test_migrate_cmds import hmp
from test_saverestore import (amber_img, full_round, guest_args, running_guest,
                              start_qmp, wait_migration)
from vm import no_sanitizer_report


def direct_io_on(c):
    c.ok("migrate-set-parameters", {"direct-io": True})
    assert c.ok("query-migrate-parameters")["direct-io"] is True


def fd_flags(pid, target):
    """The open flags of pid's descriptor on target (None if it has none)."""
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, name)) != target:
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, name)) as f:
                for line in f:
                    if line.startswith("flags:"):
                        return int(line.split()[1], 8)
        except OSError:
            pass
    return None


def assert_nothing_started(v, c):
    """After a refused `migrate`: no migration, the guest runs on."""
    assert c.ok("query-migrate") == {}
    assert c.ok("query-status")["status"] == "running"
    v.wait_reports(1, rounds=1, timeout=30)
    assert not any(e["event"] == "STOP" for e in c.events), c.events


# ---- saves that work ----

def test_background_snapshot(tmpvm, tmp_path):
    """snapshot_round checks completion, the running source, no write
    protection left, and the restored instant; here also the image."""
    info, img = snapshot_round(tmpvm, str(tmp_path), 2, "ram", params={"direct-io": True})
    assert amber_img("verify", img).stdout.strip() == "OK"
    assert os.path.getsize(img) == info["ram"]["transferred"], info


@pytest.mark.parametrize("smp", [1, 4])
def test_save_restore(tmpvm, tmp_path, smp):
    """A plain (stopping) save: the restored RAM is the source's, byte for byte."""
    img = str(tmp_path / "vm.img")
    full_round(tmpvm, tmp_path, smp, "ram", "file:" + img, ["-incoming", "file:" + img],
               img, before_save=direct_io_on)


def test_written_with_o_direct(tmpvm, tmp_path):
    """While a slow save runs, amber's descriptor on the image has O_DIRECT;
    a cancel then closes it and the guest runs on."""
    img = str(tmp_path / "vm.img")
    v, c = running_guest(tmpvm, 2)
    direct_io_on(c)
    c.ok("migrate-set-parameters", {"max-bandwidth": 8 << 20})
    c.ok("migrate", {"uri": "file:" + img})
    deadline = time.monotonic() + 20
    flags = None
    while flags is None or os.path.getsize(img) < 2 << 20:
        assert time.monotonic() < deadline, (flags, os.path.getsize(img))
        assert c.ok("query-migrate")["status"] in ("setup", "active")
        flags = fd_flags(v.proc.pid, img)
        time.sleep(0.05)
    assert flags & os.O_DIRECT, oct(flags)
    c.ok("migrate_cancel")
    assert wait_migration(c, timeout=30)["status"] == "cancelled"
    assert fd_flags(v.proc.pid, img) is None            # closed
    assert c.ok("query-status")["status"] == "running"
    v.wait_reports(2, rounds=1, timeout=30)
    no_sanitizer_report(v.output())


# ---- refusals ----

@pytest.mark.parametrize("kind", ["exec", "fd", "unix"])
def test_refused_not_file(tmpvm, tmp_path, kind):
    out = str(tmp_path / "vm.img")
    v, c = start_qmp(tmpvm, guest_args(1))
    v.wait_reports(1, rounds=1, timeout=60)
    direct_io_on(c)
    listener = None
    if kind == "exec":
        uri = "exec:cat > '%s'" % out
    elif kind == "fd":
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            c.ok("getfd", {"fdname": "out"}, fds=[fd])
        finally:
            os.close(fd)
        uri = "fd:out"
    else:
        # A real listener: the refusal is direct-io's, not a failed connect.
        sock = str(tmp_path / "mig.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock)
        listener.listen(1)
        uri = "unix:" + sock
    try:
        e = c.error("migrate", {"uri": uri})
        assert e["desc"] == "direct-io needs a file: URI, not '%s'" % uri, e
        assert_nothing_started(v, c)
        if kind == "exec":
            assert not os.path.exists(out)              # the command never ran
        out_hmp = hmp(c, 'migrate "%s"' % uri)
        assert "direct-io needs a file: URI" in out_hmp, out_hmp
        assert_nothing_started(v, c)
        if kind == "fd":
            # The descriptor was not taken: without direct-io it still works.
            c.ok("migrate-set-parameters", {"direct-io": False})
            c.ok("migrate", {"uri": uri})
            info = wait_migration(c)
            assert info["status"] == "completed", info
            assert os.path.getsize(out) == info["ram"]["transferred"]
    finally:
        if listener:
            listener.close()
    no_sanitizer_report(v.output())


def test_offset(tmpvm, tmp_path):
    """file:,offset=100 is refused; file:,offset=4096 saves after the first
    4096 bytes (left as they were) and restores from there."""
    img = str(tmp_path / "vm.img")
    head = os.urandom(4096)
    with open(img, "wb") as f:
        f.write(head)

    def refused_then_on(c):
        direct_io_on(c)
        e = c.error("migrate", {"uri": "file:%s,offset=100" % img})
        assert "direct-io: '%s" % img in e["desc"], e
        assert "must start at a multiple of 4096 bytes, not at offset 100" in e["desc"], e
        assert c.ok("query-migrate") == {}
        assert c.ok("query-status")["status"] == "running"
        assert not any(ev["event"] == "STOP" for ev in c.events), c.events
        assert c.ok("query-migrate-parameters")["direct-io"] is True

    uri = "file:%s,offset=4096" % img
    full_round(tmpvm, tmp_path, 2, "ram", uri, ["-incoming", uri], None,
               before_save=refused_then_on)
    with open(img, "rb") as f:
        assert f.read(4096) == head


# ---- parameters ----

def test_parameter_qmp_and_hmp(tmpvm, tmp_path):
    v, c = start_qmp(tmpvm, guest_args(1))
    assert c.ok("query-migrate-parameters")["direct-io"] is False
    assert "direct-io: off" in hmp(c, "info migrate_parameters")
    assert hmp(c, "migrate_set_parameter direct-io on") == ""
    assert c.ok("query-migrate-parameters")["direct-io"] is True
    assert "direct-io: on\r\n" in hmp(c, "info migrate_parameters")
    out = hmp(c, "migrate_set_parameter direct-io maybe")
    assert out.startswith("Error: ") and out.count("\r\n") == 1, out
    assert "direct-io" in out and "'maybe'" in out, out
    assert c.ok("query-migrate-parameters")["direct-io"] is True
    e = c.error("migrate-set-parameters", {"direct-io": "yes"})
    assert "direct-io" in e["desc"] and "boolean" in e["desc"], e
    assert c.ok("query-migrate-parameters")["direct-io"] is True
    assert hmp(c, "migrate_set_parameter direct-io off") == ""
    assert c.ok("query-migrate-parameters")["direct-io"] is False
    assert "direct-io: off\r\n" in hmp(c, "info migrate_parameters")
