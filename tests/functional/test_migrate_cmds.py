"""Migration commands: capabilities, parameters, migrate and its errors,
query-migrate, migrate_cancel, -incoming defer + migrate-incoming, HMP words.

Whether a saved VM restores correctly is tested in test_saverestore.py;
here the commands, their replies and the run state around them are."""
import os
import time

import pytest

from migrate_compat import COMPAT_HMP, COMPAT_HMP_NAMES, DEFAULT_PARAMS, caps, caps_hmp
from qmp import Qmp

MEM = "64"
FINAL = ("completed", "failed", "cancelled")


def start(tmpvm, *extra, smp=1):
    vm = tmpvm(["-m", MEM, "-smp", str(smp)] + list(extra))
    sock = vm.path("qmp.sock")
    vm.args += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    vm.start()
    c = Qmp.connect(sock)
    c.negotiate()
    return vm, c


@pytest.fixture
def vmq(tmpvm):
    vm, c = start(tmpvm)
    yield vm, c
    c.close()


def hmp(c, line):
    return c.ok("human-monitor-command", {"command-line": line})


def wait_status(c, statuses=FINAL, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = c.ok("query-migrate")
        if info.get("status") in statuses:
            return info
        time.sleep(0.02)
    raise AssertionError("migration still %r after %ss" % (info, timeout))


def events_on(c):
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "events", "state": True}]})


def migration_events(c, until=None, timeout=5):
    """MIGRATION statuses received so far; with `until`, wait for that one.

    Events from the migration thread reach the monitor through the main
    loop, so a reply to query-migrate can overtake the last event."""
    deadline = time.monotonic() + timeout
    while True:
        got = [e["data"]["status"] for e in c.events if e["event"] == "MIGRATION"]
        if until is None or until in got or time.monotonic() > deadline:
            return got
        c.ok("query-status")                # reading a reply collects events
        time.sleep(0.02)


def assert_running_again(vm, c):
    assert c.ok("query-status")["status"] == "running"
    vm.wait_reports(1, 1, timeout=20)      # the guest makes progress


# ---- capabilities and parameters ------------------------------------------------

# Every capability and parameter, at their defaults: migrate_compat.py.

def test_capabilities_round_trip(vmq):
    vm, c = vmq
    assert c.ok("query-migrate-capabilities") == caps()
    events_on(c)
    assert c.ok("query-migrate-capabilities") == caps(["events"])
    assert hmp(c, "info migrate_capabilities") == caps_hmp(["events"])
    assert hmp(c, "migrate_set_capability events off") == ""
    assert c.ok("query-migrate-capabilities") == caps()


@pytest.mark.parametrize("caps,desc", [
    ([{"capability": "no-such-cap", "state": True}],
     "Parameter 'capabilities[0].capability' does not accept value 'no-such-cap'"),
    ([{"capability": "events", "state": "yes"}],
     "Invalid parameter type for 'capabilities[0].state', expected: boolean"),
    ([{"capability": "events"}], "Parameter 'capabilities[0].state' is missing"),
    ("events", "Invalid parameter type for 'capabilities', expected: array"),
])
def test_capabilities_bad(vmq, caps, desc):
    vm, c = vmq
    e = c.error("migrate-set-capabilities", {"capabilities": caps})
    assert e["class"] == "GenericError"
    assert e["desc"] == desc
    assert c.ok("query-migrate-capabilities") == caps()


def test_capabilities_hmp_bad(vmq):
    vm, c = vmq
    assert "does not accept value 'postcopy-nope'" in hmp(c, "migrate_set_capability "
                                                              "postcopy-nope on")
    assert "must be 'on' or 'off'" in hmp(c, "migrate_set_capability events maybe")


def test_parameters_round_trip(vmq):
    vm, c = vmq
    assert c.ok("query-migrate-parameters") == DEFAULT_PARAMS
    c.ok("migrate-set-parameters", {"max-bandwidth": 1 << 20, "downtime-limit": 50})
    assert c.ok("query-migrate-parameters") == dict(DEFAULT_PARAMS, **{"max-bandwidth": 1 << 20,
                                                          "downtime-limit": 50})
    # Only what is given changes.
    c.ok("migrate-set-parameters", {"downtime-limit": 2000000})
    assert c.ok("query-migrate-parameters") == dict(DEFAULT_PARAMS, **{"max-bandwidth": 1 << 20,
                                                          "downtime-limit": 2000000})
    assert hmp(c, "migrate_set_parameter max-bandwidth 64M") == ""
    assert hmp(c, "migrate_set_parameter downtime-limit 120") == ""
    assert c.ok("query-migrate-parameters") == dict(DEFAULT_PARAMS, **{"max-bandwidth": 64 << 20,
                                                          "downtime-limit": 120})
    assert hmp(c, "info migrate_parameters") == (
        "max-bandwidth: 67108864 bytes/second\r\ndowntime-limit: 120 ms\r\n"
        "x-background-snapshot-pool-size: 0 bytes (automatic)\r\n"
        "x-background-snapshot-chunk-size: 2097152 bytes\r\n"
        "direct-io: off\r\n"
        "max-postcopy-bandwidth: 0 bytes/second (no limit)\r\n"
        "multifd-channels: 2\r\n" + COMPAT_HMP)


def test_hmp_parameter_words(vmq):
    """Every parameter HMP shows can be set by its name, and an unknown name
    lists them all."""
    vm, c = vmq
    shown = [line.split(":")[0] for line in
             hmp(c, "info migrate_parameters").splitlines()]
    assert shown == ["max-bandwidth", "downtime-limit", "x-background-snapshot-pool-size",
                     "x-background-snapshot-chunk-size", "direct-io",
                     "max-postcopy-bandwidth", "multifd-channels"] + COMPAT_HMP_NAMES
    out = hmp(c, "migrate_set_parameter no-such-thing 1")
    assert out == "Error: Invalid parameter 'no-such-thing' (known: %s)\r\n" % ", ".join(shown)
    assert hmp(c, "migrate_set_parameter x-background-snapshot-chunk-size 64K") == ""
    assert hmp(c, "migrate_set_parameter x-background-snapshot-pool-size 8M") == ""
    assert hmp(c, "migrate_set_parameter direct-io on") == ""
    assert hmp(c, "migrate_set_parameter max-bandwidth 0") == ""
    p = c.ok("query-migrate-parameters")
    assert p["x-background-snapshot-chunk-size"] == 64 << 10
    assert p["x-background-snapshot-pool-size"] == 8 << 20
    assert p["direct-io"] is True
    out = hmp(c, "info migrate_parameters")
    assert "max-bandwidth: 0 bytes/second (no limit)\r\n" in out
    assert "x-background-snapshot-pool-size: 8388608 bytes\r\n" in out
    assert "direct-io: on\r\n" in out
    # A bad value is refused with the handler's or the parser's reason; nothing changes.
    assert hmp(c, "migrate_set_parameter x-background-snapshot-chunk-size 3000").startswith(
        "Error: Parameter 'x-background-snapshot-chunk-size' expects a power of two")
    assert hmp(c, "migrate_set_parameter direct-io maybe").startswith("Error: ")
    assert hmp(c, "migrate_set_parameter downtime-limit 1x").startswith("Error: ")
    assert c.ok("query-migrate-parameters") == p


@pytest.mark.parametrize("args,desc", [
    ({"downtime-limit": 2000001},
     "Parameter 'downtime-limit' expects an integer in the range of 0 to 2000000 "
     "milliseconds"),
    ({"max-bandwidth": 1 << 30, "downtime-limit": 2000001},
     "Parameter 'downtime-limit' expects an integer"),
    ({"max-bandwidth": -1}, "Parameter 'max-bandwidth' expects size"),
    ({"max-bandwidth": "fast"}, "Invalid parameter type for 'max-bandwidth'"),
    ({"xbzrle-cache-size": 1}, "Parameter 'xbzrle-cache-size' is unexpected"),
])
def test_parameters_bad(vmq, args, desc):
    vm, c = vmq
    e = c.error("migrate-set-parameters", args)
    assert e["desc"].startswith(desc), e
    # All or nothing: the valid max-bandwidth next to a bad value is not applied.
    assert c.ok("query-migrate-parameters") == DEFAULT_PARAMS


def test_parameters_hmp_bad(vmq):
    vm, c = vmq
    assert "Invalid parameter 'speed'" in hmp(c, "migrate_set_parameter speed 1")
    assert hmp(c, "migrate_set_parameter max-bandwidth lots").startswith("Error: ")
    assert "must be a number" in hmp(c, "migrate_set_parameter downtime-limit x")
    assert c.ok("query-migrate-parameters") == DEFAULT_PARAMS


# ---- migrate: errors that leave the VM alone ---------------------------------------

@pytest.mark.parametrize("uri,desc", [
    ("gopher:x", "unknown migration URI scheme 'gopher'"),
    ("file:/nonexistent-dir/vm.snap",
     "cannot open '/nonexistent-dir/vm.snap' for writing: No such file or directory"),
    ("fd:nosuchfd", "File descriptor named 'nosuchfd' has not been found"),
    ("tcp:localhost:notaport", "invalid port 'notaport'"),
])
def test_migrate_refused_at_once(vmq, uri, desc):
    vm, c = vmq
    e = c.error("migrate", {"uri": uri})
    assert desc in e["desc"], e
    assert c.ok("query-migrate") == {}
    assert_running_again(vm, c)
    assert not any(ev["event"] == "STOP" for ev in c.events)


def test_migrate_exec_command_missing(vmq):
    vm, c = vmq
    events_on(c)
    c.ok("migrate", {"uri": "exec:/nonexistent-command-xyz"})
    info = wait_status(c)
    assert info["status"] == "failed"
    assert "exec:/nonexistent-command-xyz" in info["error-desc"], info
    assert "Broken pipe" in info["error-desc"] or "127" in info["error-desc"], info
    assert migration_events(c)[0] == "setup" and migration_events(c)[-1] == "failed"
    assert_running_again(vm, c)
    # The failure stays readable, also from HMP.
    out = hmp(c, "info migrate")
    assert "Migration status: failed" in out and "Error: " in out


def test_migrate_exec_reader_fails_after_reading(vmq, tmp_path):
    """A reader that takes the whole stream but exits 3: failed, VM running."""
    vm, c = vmq
    c.ok("migrate", {"uri": "exec:cat > %s; exit 3" % (tmp_path / "s")})
    info = wait_status(c)
    assert info["status"] == "failed"
    assert info["error-desc"].endswith("failed with exit status 3"), info
    assert info["ram"]["remaining"] == 0
    assert_running_again(vm, c)


# ---- migrate: success and the shape of query-migrate --------------------------------

def test_migrate_file_completes(vmq, tmp_path):
    vm, c = vmq
    snap = tmp_path / "vm.snap"
    events_on(c)
    c.ok("migrate", {"uri": "file:%s" % snap})
    info = wait_status(c)
    assert info["status"] == "completed", info
    assert set(info) == {"status", "total-time", "setup-time", "downtime", "ram"}
    ram = info["ram"]
    assert set(ram) == {"transferred", "remaining", "total", "duplicate", "normal",
                        "normal-bytes", "mbps", "dirty-sync-count", "page-size",
                        "pages-per-second", "precopy-bytes", "downtime-bytes",
                        "postcopy-requests", "postcopy-bytes", "dirty-pages-rate",
                        "skipped", "multifd-bytes", "dirty-sync-missed-zero-copy"}
    assert ram["postcopy-requests"] == 0 and ram["postcopy-bytes"] == 0
    assert ram["dirty-pages-rate"] == ram["skipped"] == ram["multifd-bytes"] == 0
    assert ram["dirty-sync-missed-zero-copy"] == 0
    assert ram["total"] == 64 << 20 and ram["remaining"] == 0
    assert ram["duplicate"] + ram["normal"] == (64 << 20) // 4096
    assert ram["normal"] > 0 and ram["normal-bytes"] == ram["normal"] * 4096
    assert ram["transferred"] == os.path.getsize(snap)
    assert ram["precopy-bytes"] + ram["downtime-bytes"] == ram["transferred"]
    assert ram["dirty-sync-count"] == 1 and ram["page-size"] == 4096
    assert 0 <= info["setup-time"] <= info["total-time"]
    assert 0 <= info["downtime"] <= info["total-time"]
    with open(snap, "rb") as f:
        assert f.read(8) == b"QEVM\x00\x00\x00\x03"
    assert c.ok("query-status")["status"] == "postmigrate"
    assert migration_events(c) == ["setup", "active", "completed"]
    names = [e["event"] for e in c.events]
    assert names.index("STOP") < names.index("MIGRATION_PASS")
    assert "RESUME" not in names
    # The guest stays stopped; cont resumes it, and a second save works.
    c.ok("cont")
    assert_running_again(vm, c)
    c.ok("migrate", {"uri": "file:%s" % (tmp_path / "again.snap")})
    assert wait_status(c)["status"] == "completed"


def test_migrate_fd(vmq, tmp_path):
    vm, c = vmq
    path = tmp_path / "fd.snap"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        c.ok("getfd", {"fdname": "snap"}, fds=[fd])
    finally:
        os.close(fd)
    c.ok("migrate", {"uri": "fd:snap"})
    info = wait_status(c)
    assert info["status"] == "completed", info
    assert os.path.getsize(path) == info["ram"]["transferred"]
    # The descriptor was taken: a second use is refused.
    assert "has not been found" in c.error("migrate", {"uri": "fd:snap"})["desc"]


# ---- in progress: refusals, query shape, cancel --------------------------------------

def wait_stopped(c, timeout=10):
    deadline = time.monotonic() + timeout
    while c.ok("query-status")["status"] != "finish-migrate":
        assert time.monotonic() < deadline, "the VM was never stopped"
        time.sleep(0.02)


def slow_migration(c, tmp_path):
    """A migration held back by max-bandwidth (64 KiB/s): minutes long."""
    c.ok("migrate-set-parameters", {"max-bandwidth": 64 << 10})
    c.ok("migrate", {"uri": "file:%s" % (tmp_path / "slow.snap")})
    info = wait_status(c, ("active",))
    wait_stopped(c)
    return info


def test_cancel_slow_migration(vmq, tmp_path):
    vm, c = vmq
    events_on(c)
    info = slow_migration(c, tmp_path)
    assert info["expected-downtime"] == 300
    assert 0 < info["ram"]["remaining"] < info["ram"]["total"] or \
        info["ram"]["remaining"] == info["ram"]["total"]
    # While it runs: a second migrate and capability changes are refused,
    # parameters may change, the monitor answers.
    e = c.error("migrate", {"uri": "file:%s" % (tmp_path / "other.snap")})
    assert e["desc"] == "There's a migration process in progress"
    e = c.error("migrate-set-capabilities",
                {"capabilities": [{"capability": "events", "state": False}]})
    assert e["desc"] == "There's a migration process in progress"
    assert "Migration is not finalized yet" in c.error("cont")["desc"]
    assert c.ok("query-status")["status"] == "finish-migrate"
    info = c.ok("query-migrate")
    assert info["status"] == "active" and info["ram"]["transferred"] > 0
    out = hmp(c, "info migrate")
    assert "Migration status: active" in out and "transferred ram:" in out
    c.ok("migrate_cancel")
    info = wait_status(c, timeout=5)
    assert info == {"status": "cancelled"}
    assert migration_events(c, "cancelled") == ["setup", "active", "cancelling", "cancelled"]
    assert_running_again(vm, c)
    names = [e["event"] for e in c.events]
    assert names.index("STOP") < names.index("RESUME")
    c.ok("migrate_cancel")                  # nothing in progress: no error
    assert c.ok("query-migrate") == {"status": "cancelled"}


def test_cancel_stalled_exec_reader(vmq, tmp_path):
    """The reader does not read for 30 s: cancel must not wait for it."""
    vm, c = vmq
    out = tmp_path / "late.snap"
    c.ok("migrate", {"uri": "exec:sleep 30; cat > %s" % out})
    wait_stopped(c)
    t = time.monotonic()
    c.ok("migrate_cancel")
    assert wait_status(c, timeout=5)["status"] == "cancelled"
    assert time.monotonic() - t < 3
    assert_running_again(vm, c)


def test_hmp_migrate_words(vmq, tmp_path):
    vm, c = vmq
    # Without -d HMP waits for the end and reports a failure.
    out = hmp(c, 'migrate "exec:exit 1"')
    assert out.startswith("Error: ") and "exit 1" in out and out.count("\r\n") == 1, out
    assert_running_again(vm, c)
    assert hmp(c, "migrate file:%s" % (tmp_path / "h.snap")) == ""
    out = hmp(c, "info migrate")
    assert out.startswith("Migration status: completed\r\n"), out
    for word in ("total time:", "downtime:", "setup:", "transferred ram:", "normal:",
                 "duplicate:", "pages-per-second:"):
        assert word in out
    assert c.ok("query-status")["status"] == "postmigrate"
    assert hmp(c, "migrate") == "Usage: migrate [-d] [-r] URI\r\n"
    assert "Cannot resume if there is no paused migration" in hmp(c, "migrate -r tcp:h:1")
    assert "migrate-pause is currently only supported" in hmp(c, "migrate_pause")
    assert "Migrate recover can only be run when postcopy is paused" in \
        hmp(c, "migrate_recover tcp:0:1")
    assert "unknown migration URI scheme" in hmp(c, "migrate -d nope:x")
    c.ok("cont")
    c.ok("migrate-set-parameters", {"max-bandwidth": 64 << 10})
    assert hmp(c, "migrate -d file:%s" % (tmp_path / "d.snap")) == ""
    assert hmp(c, "migrate_cancel") == ""
    assert wait_status(c)["status"] == "cancelled"
    assert "'-incoming' was not specified" in hmp(c, "migrate_incoming file:/x")
    assert c.error("migrate-incoming", {"uri": "file:/x"})["desc"] == \
        "'-incoming' was not specified on the command line"


# ---- incoming: defer, migrate-incoming, cont/stop in inmigrate ------------------------

def save_snapshot(tmpvm, path):
    vm, c = start(tmpvm)
    vm.wait_reports(1, 1, timeout=20)
    c.ok("migrate", {"uri": "file:%s" % path})
    assert wait_status(c)["status"] == "completed"
    c.close()
    vm.kill()


def test_incoming_defer(tmpvm, tmp_path):
    snap = tmp_path / "vm.snap"
    save_snapshot(tmpvm, snap)
    vm, c = start(tmpvm, "-S", "-incoming", "defer")
    assert c.ok("query-status")["status"] == "inmigrate"
    assert c.ok("query-migrate") == {}
    assert c.error("migrate", {"uri": "file:%s" % (tmp_path / "x")})["desc"] == \
        "Guest is waiting for an incoming migration"
    # A bad URI is an error reply and can be corrected.
    e = c.error("migrate-incoming", {"uri": "file:%s" % (tmp_path / "missing")})
    assert "cannot open" in e["desc"]
    assert "'defer' is only for the command line" in \
        c.error("migrate-incoming", {"uri": "defer"})["desc"]
    events_on(c)
    c.ok("cont")                # in inmigrate: run once loaded, despite -S
    assert c.ok("query-status")["status"] == "inmigrate"
    c.ok("migrate-incoming", {"uri": "file:%s" % snap})
    assert c.error("migrate-incoming", {"uri": "file:%s" % snap})["desc"] == \
        "The incoming migration has already been started"
    assert wait_status(c)["status"] == "completed"
    deadline = time.monotonic() + 10
    while c.ok("query-status")["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert migration_events(c)[-1] == "completed"
    vm.wait_reports(1, 1, timeout=20)


def test_incoming_stop_keeps_it_paused(tmpvm, tmp_path):
    snap = tmp_path / "vm.snap"
    save_snapshot(tmpvm, snap)
    vm, c = start(tmpvm, "-incoming", "defer")
    c.ok("stop")                # in inmigrate: stays inmigrate, loads paused
    assert c.ok("query-status")["status"] == "inmigrate"
    c.ok("migrate-incoming", {"uri": "exec:cat %s" % snap})
    assert wait_status(c)["status"] == "completed"
    time.sleep(0.2)
    assert c.ok("query-status")["status"] == "paused"
    n = len(vm.reports())
    time.sleep(1.5)
    assert len(vm.reports()) == n       # no guest progress while paused
    c.ok("cont")
    vm.wait_reports(1, 1, timeout=20)


def test_incoming_failure_exits(tmpvm, tmp_path):
    bad = tmp_path / "bad.snap"
    bad.write_bytes(b"QEVM\x00\x00\x00\x02")
    vm = tmpvm(["-m", MEM, "-incoming", "file:%s" % bad])
    vm.start()
    assert vm.wait(timeout=20) == 1
    assert "amber: load of migration failed: unsupported stream version 2 (expected 3)" \
        in vm.output()
    assert vm.reports() == []
