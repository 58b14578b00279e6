"""QMP over unix sockets: protocol, commands, events, bad input."""
import filecmp
import json
import os
import re
import subprocess
import time

import pytest

import vm as vmmod
from qmp import Qmp, fd_targets


def start(tmpvm, *extra, smp=1, mem="64"):
    """amber with one QMP socket; returns (vm, connected client)."""
    vm = tmpvm(["-m", mem, "-smp", str(smp)] + list(extra))
    sock = vm.path("qmp.sock")
    vm.args += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    vm.start()
    c = Qmp.connect(sock)
    return vm, c


@pytest.fixture
def vmq(tmpvm):
    vm, c = start(tmpvm)
    c.negotiate()
    yield vm, c
    c.close()


def test_greeting_and_negotiation(tmpvm):
    vm, c = start(tmpvm)
    ver = c.greeting["QMP"]["version"]
    assert set(ver["qemu"]) == {"major", "minor", "micro"}
    assert ver["package"].startswith("amber-")
    assert c.greeting["QMP"]["capabilities"] == []
    e = c.error("query-status")
    assert e == {"class": "CommandNotFound",
                 "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}
    assert c.cmd("qmp_capabilities", id="n1") == {"return": {}, "id": "n1"}
    assert c.error("qmp_capabilities")["class"] == "CommandNotFound"
    assert c.ok("query-status")["status"] == "running"


def test_query_commands_and_version(vmq):
    vm, c = vmq
    names = {x["name"] for x in c.ok("query-commands")}
    for n in ("qmp_capabilities", "query-version", "query-commands", "query-status",
              "query-name", "stop", "cont", "quit", "system_reset", "query-cpus-fast",
              "pmemsave", "human-monitor-command", "getfd", "closefd"):
        assert n in names
    v = c.ok("query-version")
    # The QMP level (QEMU 7.2's) in qemu, amber's own version in package.
    assert v["qemu"] == {"major": 7, "minor": 2, "micro": 0}
    assert re.fullmatch(r"amber-\d+\.\d+\.\d+", v["package"])
    assert c.greeting["QMP"]["version"] == v


def test_query_status_name_cpus(tmpvm):
    vm, c = start(tmpvm, "-name", "guest-a", smp=2)
    c.negotiate()
    assert c.ok("query-status") == {"running": True, "singlestep": False,
                                    "status": "running"}
    assert c.ok("query-name") == {"name": "guest-a"}
    cpus = c.ok("query-cpus-fast")
    assert [x["cpu-index"] for x in cpus] == [0, 1]
    tasks = set(os.listdir("/proc/%d/task" % vm.proc.pid))
    for x in cpus:
        assert x["target"] == "x86_64"
        assert set(x["props"]) == {"core-id", "thread-id", "socket-id"}
        assert str(x["thread-id"]) in tasks       # a real thread of amber
        assert x["qom-path"]
    assert cpus[0]["thread-id"] != cpus[1]["thread-id"]


def test_query_name_absent(vmq):
    vm, c = vmq
    assert c.ok("query-name") == {}


def test_id_echoed(vmq):
    vm, c = vmq
    for ident in ("abc", 42, {"a": [1, None]}, [1, 2]):
        assert c.cmd("query-status", id=ident)["id"] == ident
    assert c.cmd("no-such-command", id=7)["id"] == 7


def test_stop_cont_events_and_memory(vmq):
    vm, c = vmq
    vm.wait_serial(r"^vcpu=0 pass=")          # the guest is writing memory
    size = 64 << 20
    c.ok("stop")
    ev = c.event("STOP")
    assert set(ev["timestamp"]) == {"seconds", "microseconds"}
    assert abs(ev["timestamp"]["seconds"] - time.time()) < 60
    assert 0 <= ev["timestamp"]["microseconds"] < 1000000
    assert c.ok("query-status")["status"] == "paused"
    a, b, d = vm.path("a.bin"), vm.path("b.bin"), vm.path("c.bin")
    c.ok("pmemsave", {"val": 0, "size": size, "filename": a})
    time.sleep(0.3)
    c.ok("pmemsave", {"val": 0, "size": size, "filename": b})
    assert os.path.getsize(a) == size
    assert filecmp.cmp(a, b, shallow=False), "guest memory changed while stopped"
    c.ok("cont")
    c.event("RESUME")
    assert c.ok("query-status")["running"] is True
    time.sleep(0.3)
    c.ok("pmemsave", {"val": 0, "size": size, "filename": d})
    assert not filecmp.cmp(a, d, shallow=False), "guest memory did not change after cont"


def test_cont_starts_prelaunch(tmpvm):
    vm, c = start(tmpvm, "-S")
    c.negotiate()
    assert c.ok("query-status") == {"running": False, "singlestep": False,
                                    "status": "prelaunch"}
    c.ok("cont")
    c.event("RESUME")
    assert c.ok("query-status")["status"] == "running"
    vm.wait_serial(r"^vcpu=0 pass=")


@pytest.mark.parametrize("args,desc", [
    ({"size": 1, "filename": "x"}, "Parameter 'val' is missing"),
    ({"val": 0, "size": "1", "filename": "x"},
     "Invalid parameter type for 'size', expected: integer"),
    ({"val": 0, "size": 1, "filename": "x", "extra": 1}, "Parameter 'extra' is unexpected"),
])
def test_argument_errors(vmq, args, desc):
    vm, c = vmq
    assert c.error("pmemsave", args) == {"class": "GenericError", "desc": desc}


def test_pmemsave_bad_range(vmq):
    vm, c = vmq
    path = vm.path("bad.bin")
    e = c.error("pmemsave", {"val": 63 << 20, "size": 2 << 20, "filename": path})
    assert "not all RAM" in e["desc"]
    assert not os.path.exists(path)
    assert "desc" in c.error("pmemsave", {"val": 0, "size": -1, "filename": path})
    e = c.error("pmemsave", {"val": 0, "size": 1, "filename": "/nonexistent/dir/f"})
    assert "/nonexistent/dir/f" in e["desc"]


def test_bad_input(vmq):
    vm, c = vmq
    c.send_raw(b'{"execute": oops}\n')
    e = c.reply()["error"]
    assert e["class"] == "GenericError" and e["desc"].startswith("JSON parse error")
    c.send_raw(b'[1, 2]\n')
    assert c.reply()["error"]["desc"] == "QMP input must be a JSON object"
    c.send_raw(b'{"arguments": {}}\n')
    assert c.reply()["error"]["desc"] == "QMP input lacks member 'execute'"
    e = c.error("frobnicate")
    assert e == {"class": "CommandNotFound", "desc": "The command frobnicate has not been found"}
    # Not line-based: two requests in one write, one split over two writes.
    c.send_raw(b'{"execute": "query-name", "id": 1}{"execute": "query-name", "id": 2}')
    assert [c.reply()["id"], c.reply()["id"]] == [1, 2]
    c.send_raw(b'{"execute": "query-')
    time.sleep(0.1)
    c.send_raw(b'name", "id": 3}')
    assert c.reply() == {"return": {}, "id": 3}


def test_two_mib_request(vmq):
    vm, c = vmq
    big = '{"execute": "query-name", "arguments": {"x": "%s"}}\n' % ("{" * (2 << 20))
    c.send_raw(big.encode())
    e = c.reply(timeout=30)["error"]
    assert e["class"] == "GenericError" and "larger than" in e["desc"]
    # The parser resynchronised: the next request works on the same connection.
    assert c.cmd("query-status", id="after")["id"] == "after"
    assert vm.proc.poll() is None


def test_disconnect_mid_command(tmpvm):
    vm, c = start(tmpvm)
    sock = vm.path("qmp.sock")
    c.negotiate()
    c.send_raw(b'{"execute": "query-sta')          # half a request, then gone
    c.close()
    c = Qmp.connect(sock)
    assert "QMP" in c.greeting
    # A fresh connection starts unnegotiated, with no leftover input.
    assert c.error("query-status")["class"] == "CommandNotFound"
    c.negotiate()
    c.send({"execute": "stop"})                    # leave before the reply
    c.close()
    c = Qmp.connect(sock)
    c.negotiate()
    assert c.ok("query-status")["status"] == "paused"
    assert vm.proc.poll() is None


def test_two_monitors_see_events(tmpvm):
    vm = tmpvm(["-m", "64"])
    p1, p2 = vm.path("q1.sock"), vm.path("q2.sock")
    vm.args += ["-qmp", "unix:%s,server=on,wait=off" % p1,
                "-qmp", "unix:%s,server=on,wait=off" % p2]
    vm.start()
    a, b = Qmp.connect(p1), Qmp.connect(p2)
    a.negotiate()
    b.negotiate()
    a.ok("stop")
    ea, eb = a.event("STOP"), b.event("STOP")
    assert ea["timestamp"] == eb["timestamp"]
    b.ok("cont")
    a.event("RESUME")
    b.event("RESUME")
    a.ok("system_reset")
    for m in (a, b):
        ev = m.event("RESET")
        assert ev["data"]["guest"] is False


def test_getfd_closefd(vmq):
    vm, c = vmq
    r, w = os.pipe()
    try:
        ino = "pipe:[%d]" % os.fstat(r).st_ino
        assert ino not in fd_targets(vm.proc.pid)
        assert c.cmd("getfd", {"fdname": "p1"}, fds=[r]) == {"return": {}}
        assert ino in fd_targets(vm.proc.pid)
        e = c.error("getfd", {"fdname": "p2"})
        assert e["desc"] == "No file descriptor supplied via SCM_RIGHTS"
        c.ok("closefd", {"fdname": "p1"})
        assert ino not in fd_targets(vm.proc.pid)
        assert "not found" in c.error("closefd", {"fdname": "p1"})["desc"]
    finally:
        os.close(r)
        os.close(w)


def test_human_monitor_command(vmq):
    vm, c = vmq
    out = c.ok("human-monitor-command", {"command-line": "info status"})
    assert out == "VM status: running\r\n"
    c.ok("human-monitor-command", {"command-line": "stop"})
    c.event("STOP")
    out = c.ok("human-monitor-command", {"command-line": "info status"})
    assert out == "VM status: paused\r\n"
    out = c.ok("human-monitor-command", {"command-line": "bogus"})
    assert "unknown command" in out


def test_quit(vmq):
    vm, c = vmq
    assert c.cmd("quit") == {"return": {}}
    ev = c.event("SHUTDOWN")
    assert ev["data"] == {"guest": False, "reason": "host-qmp-quit"}
    assert vm.wait(timeout=10) == 0


def test_qmp_stdio(tmp_path, amber_bin, kvm):
    """-qmp stdio: the same protocol on stdin/stdout, requests not line-aligned."""
    reqs = ('{"execute": "qmp_capabilities"}{"execute": "query-status", "id": 1}\n'
            '{"execute": "quit"}\n')
    p = subprocess.run([vmmod.AMBER, "-m", "64", "-S", "-qmp", "stdio",
                        "-serial", "file:%s" % (tmp_path / "serial.log")],
                       input=reqs.encode(), stdout=subprocess.PIPE, timeout=30)
    assert p.returncode == 0
    msgs = [json.loads(l) for l in p.stdout.decode().splitlines()]
    assert "QMP" in msgs[0]
    assert msgs[1] == {"return": {}}
    assert msgs[2] == {"return": {"running": False, "singlestep": False,
                                  "status": "prelaunch"}, "id": 1}
    assert msgs[3] == {"return": {}}
    assert msgs[4]["event"] == "SHUTDOWN"
