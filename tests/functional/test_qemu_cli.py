"""QEMU's words as libvirt writes them, and the probe's QMP replies, run for real.

Everything here uses -machine none (no guest, no KVM), so it runs on any
host: libvirt's probe command line, QMP and HMP on -chardev/-mon (a path, or
a listening socket passed as a descriptor the way libvirt passes it), and
refusals of what amber cannot honour.
"""
import json
import re
import os
import shutil
import socket
import subprocess
import time

import pytest

import vm as vmmod
from qmp import Qmp


def wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("amber (pid %d) did not exit" % pid)


def test_libvirt_probe_command_line(amber_bin, tmp_path):
    """libvirt's exact probe line: daemonizes, writes the pid file, serves QMP."""
    sock, pidfile = str(tmp_path / "qmp.monitor"), str(tmp_path / "qmp.pid")
    r = vmmod.run(["-S", "-no-user-config", "-nodefaults", "-nographic",
                   "-machine", "none,accel=kvm:tcg",
                   "-qmp", "unix:%s,server=on,wait=off" % sock,
                   "-pidfile", pidfile, "-daemonize"], timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == ""
    pid = int(open(pidfile).read())
    with Qmp.connect(sock) as c:
        assert c.greeting["QMP"]["version"]["qemu"] == {"major": 7, "minor": 2, "micro": 0}
        assert c.greeting["QMP"]["version"]["package"].startswith("amber-")
        c.negotiate()
        assert c.ok("query-version") == c.greeting["QMP"]["version"]
        assert c.ok("query-target") == {"arch": "x86_64"}
        assert c.ok("query-status")["status"] == "prelaunch"
        kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
        assert c.ok("query-kvm") == {"enabled": kvm, "present": kvm}
        c.ok("quit")
    wait_gone(pid)
    assert not os.path.exists(pidfile)


@pytest.fixture
def none_vm(tmp_path, amber_bin):
    """Factory: an amber -machine none with extra args; quit and checked at teardown."""
    vms = []

    def make(args, pass_fds=()):
        out = open(str(tmp_path / ("out%d.log" % len(vms))), "w+")
        p = subprocess.Popen([amber_bin, "-machine", "none"] + list(args),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                             pass_fds=pass_fds)
        vms.append((p, out))
        return p

    yield make
    for p, out in vms:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        out.seek(0)
        vmmod.no_sanitizer_report(out.read())
        out.close()


def listening_socket(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s


def test_qmp_on_passed_listening_fd(none_vm, tmp_path):
    """libvirt's monitor: it binds and listens, amber gets the descriptor."""
    path = str(tmp_path / "monitor.sock")
    ls = listening_socket(path)
    fd = ls.fileno()
    # A second passed socket, for an HMP nobody connects to.
    hpath = str(tmp_path / "hmp.sock")
    hs = listening_socket(hpath)
    hfd = hs.fileno()
    p = none_vm(["-S", "-no-user-config", "-nodefaults", "-nographic",
                 "-name", "guest=demo,debug-threads=on",
                 "-object", "secret,id=masterKey0,format=raw,file=%s" % (tmp_path / "key"),
                 "-uuid", "c7a5fdbd-edaf-9455-926a-d65c16db1809",
                 "-chardev", "socket,id=charmonitor,fd=%d,server=on,wait=off" % fd,
                 "-mon", "chardev=charmonitor,id=monitor,mode=control",
                 "-chardev", "socket,id=charhmp,fd=%d,server=on,wait=off" % hfd,
                 "-mon", "chardev=charhmp,mode=readline",
                 "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on",
                 "-msg", "timestamp=on", "-overcommit", "mem-lock=off",
                 "-audiodev", '{"id":"audio1","driver":"none"}', "-display", "none"],
                pass_fds=(fd, hfd))
    ls.close()              # amber holds its own copy now
    hs.close()
    with Qmp.connect(path) as c:
        c.negotiate()
        assert c.ok("query-name") == {"name": "demo"}
        assert c.ok("query-target") == {"arch": "x86_64"}
        e = c.error("pmemsave", {"val": 0, "size": 1, "filename": str(tmp_path / "x")})
        assert e == {"class": "GenericError", "desc": "Machine 'none' runs no guest"}
        # A passed socket goes by the path it was bound to, as QEMU names it.
        chardevs = {d["label"]: d["filename"] for d in c.ok("query-chardev")}
        assert chardevs["charmonitor"] == "unix:%s,server=on" % path
        assert chardevs["charhmp"] == "disconnected:unix:%s,server=on" % hpath
        c.ok("quit")
    assert p.wait(timeout=10) == 0


def test_hmp_on_chardev_path(none_vm, tmp_path):
    path = str(tmp_path / "hmp.sock")
    p = none_vm(["-chardev", "socket,id=h,path=%s,server=on,wait=off" % path,
                 "-mon", "chardev=h,mode=readline"])
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(10)
    s.sendall(b"info status\ninfo version\nhelp migrate_set_parameter\nhelp info status\n"
              b"help nope\nhelp info nope\nhelp ?\nhelp c\nquit|q\nq\n")
    got = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    text = got.decode()
    assert "VM status: paused (prelaunch)" in text
    assert "7.2.0 (amber-" in text
    # help CMD: that command's line only, as QEMU's.
    blocks = text.split("(amber) ")
    assert blocks[3].startswith("migrate_set_parameter NAME VALUE -- set a migration parameter")
    assert blocks[3].count("\n") == 1
    assert blocks[4].startswith("info status") and blocks[4].count("\n") == 1
    assert blocks[5] == "unknown command: 'nope'\r\n"
    assert blocks[6] == "unknown command: 'info nope'\r\n"
    assert blocks[7].startswith("help|? [cmd]") and blocks[7].endswith("-- show the help\r\n")
    # A command goes by any one of its names, never by the list of them.
    assert blocks[8].startswith("cont|c ") and blocks[8].count("\n") == 1
    assert blocks[9] == "unknown command: 'quit|q'\r\n"
    assert p.wait(timeout=10) == 0


def read_until(fd, needle, timeout=10):
    got = b""
    deadline = time.monotonic() + timeout
    while needle not in got and time.monotonic() < deadline:
        try:
            got += os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.02)
    return got.decode(errors="replace")


def test_hmp_on_pty(none_vm, tmp_path):
    """-chardev pty: amber says where its slave is, query-chardev names it, a user
    who opens it gets the monitor; after they leave, the next one does too."""
    qmp = str(tmp_path / "qmp.sock")
    p = none_vm(["-qmp", "unix:%s,server=on,wait=off" % qmp,
                 "-chardev", "pty,id=hmp", "-mon", "chardev=hmp,mode=readline"])
    out = str(tmp_path / "out0.log")
    deadline = time.monotonic() + 10
    printed = None
    while printed is None and time.monotonic() < deadline:
        with open(out) as f:
            printed = re.search(r"^char device redirected to (/dev/pts/\d+) \(label hmp\)$",
                                f.read(), re.M)
        time.sleep(0.05)
    assert printed, open(out).read()
    pts = printed.group(1)
    with Qmp.connect(qmp) as c:
        c.negotiate()
        chardevs = {d["label"]: d for d in c.ok("query-chardev")}
        assert chardevs["hmp"] == {"label": "hmp", "filename": "pty:" + pts,
                                   "frontend-open": True}
        for user in range(2):
            fd = os.open(pts, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                # The next user may come before amber saw the first leave: no greeting then.
                if user == 0:
                    assert "(amber) " in read_until(fd, b"(amber) ")
                os.write(fd, b"info status\r")
                assert "VM status: paused (prelaunch)" in read_until(fd, b"prelaunch")
                os.write(fd, b"info chardev\r")
                assert "hmp: filename=pty:%s\r\n" % pts in read_until(fd, pts.encode() + b"\r\n")
            finally:
                os.close(fd)
        c.ok("quit")
    assert p.wait(timeout=10) == 0


def test_file_chardev_from_an_fd_set(none_vm, tmp_path):
    """libvirt's file console: it opens the file and passes it (-add-fd), the chardev
    names the set (path=/dev/fdset/0,append=on; no such path exists). Here an HMP
    monitor writes its greeting through it, after what the file held."""
    log = tmp_path / "console.log"
    log.write_text("before\n")
    fd = os.open(str(log), os.O_WRONLY | os.O_APPEND)
    qmp = str(tmp_path / "qmp.sock")
    p = none_vm(["-qmp", "unix:%s,server=on,wait=off" % qmp,
                 "-add-fd", "set=0,fd=%d,opaque=serial0-source" % fd,
                 "-chardev", "file,id=charlog,path=/dev/fdset/0,append=on",
                 "-mon", "chardev=charlog,mode=readline"], pass_fds=(fd,))
    os.close(fd)
    with Qmp.connect(qmp) as c:
        c.negotiate()
        assert {"label": "charlog", "filename": "file", "frontend-open": True} in \
            c.ok("query-chardev")
        assert c.ok("query-fdsets") == [
            {"fdset-id": 0, "fds": [{"fd": fd, "opaque": "serial0-source"}]}]
        c.ok("quit")
    assert p.wait(timeout=10) == 0
    text = log.read_text()
    assert text.startswith("before\namber ") and "monitor - type 'help'" in text, text


def fdsets_of(argv):
    """query-fdsets of argv (QMP on stdio) with four descriptors in sets 1, 5, 0, 1."""
    fds = [os.open(os.devnull, os.O_WRONLY) for _ in range(4)]
    try:
        for n, (fd, s) in enumerate(zip(fds, (1, 5, 0, 1))):
            argv += ["-add-fd", "fd=%d,set=%d,opaque=n%d" % (fd, s, n)]
        text = "".join(json.dumps({"execute": e}) + "\n"
                       for e in ("qmp_capabilities", "query-fdsets", "quit"))
        p = subprocess.run(argv + ["-qmp", "stdio"], input=text, capture_output=True,
                           text=True, timeout=30, pass_fds=fds)
    finally:
        for fd in fds:
            os.close(fd)
    replies = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    sets = [r["return"] for r in replies if isinstance(r.get("return"), list)][0]
    return [(s["fdset-id"], [f["opaque"] for f in s["fds"]]) for s in sets]


def test_query_fdsets_as_qemu(amber_bin):
    """The sets by descending id, each one's fds in -add-fd order: QEMU 7.2's reply."""
    ours = fdsets_of([amber_bin, "-machine", "none", "-nodefaults"])
    assert ours == [(5, ["n1"]), (1, ["n0", "n3"]), (0, ["n2"])]
    qemu = shutil.which("qemu-system-x86_64")
    if qemu:
        assert fdsets_of([qemu, "-machine", "none", "-nodefaults", "-display", "none"]) == ours


def test_two_ptys_each_under_its_own_label(none_vm, tmp_path):
    """Two pty chardevs: each label in query-chardev leads to its own monitor.
    A socket chardev nothing uses listens all the same, as QEMU's does."""
    qmp = str(tmp_path / "qmp.sock")
    spare = str(tmp_path / "spare.sock")
    p = none_vm(["-qmp", "unix:%s,server=on,wait=off" % qmp,
                 "-chardev", "pty,id=hmpchr", "-mon", "chardev=hmpchr,mode=readline",
                 "-chardev", "pty,id=qmpchr", "-mon", "chardev=qmpchr,mode=control",
                 "-chardev", "socket,id=spare,path=%s,server=on,wait=off" % spare])
    with Qmp.connect(qmp) as c:
        c.negotiate()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(spare)
        paths = {d["label"]: d["filename"] for d in c.ok("query-chardev")}
        for label, needle in (("hmpchr", b"(amber) "), ("qmpchr", b'{"QMP"')):
            assert paths[label].startswith("pty:/dev/pts/"), paths
            fd = os.open(paths[label][4:], os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                assert needle.decode() in read_until(fd, needle), label
            finally:
                os.close(fd)
        c.ok("quit")
    assert p.wait(timeout=10) == 0
    with open(str(tmp_path / "out0.log")) as f:
        printed = dict(re.findall(r"^char device redirected to (\S+) \(label (\w+)\)$",
                                  f.read(), re.M))
    assert printed == {paths["hmpchr"][4:]: "hmpchr", paths["qmpchr"][4:]: "qmpchr"}


def test_probe_replies_over_the_wire(none_vm, tmp_path):
    path = str(tmp_path / "qmp.sock")
    none_vm(["-qmp", "unix:%s,server=on,wait=off" % path])
    with Qmp.connect(path) as c:
        c.negotiate()
        machines = {m["name"]: m for m in c.ok("query-machines")}
        assert set(machines) == {"pc-i440fx-7.2", "none"}
        assert machines["pc-i440fx-7.2"]["alias"] == "pc"
        assert machines["pc-i440fx-7.2"]["is-default"] is True
        assert machines["pc-i440fx-7.2"]["cpu-max"] == 8
        assert [d["name"] for d in c.ok("query-cpu-definitions")] == ["host"]
        assert c.ok("query-tpm-models") == [] and c.ok("query-tpm-types") == []
        types = {t["name"] for t in c.ok("qom-list-types")}
        assert {"isa-serial", "kvm-accel", "memory-backend-memfd", "secret",
                "none-machine", "pc-i440fx-7.2-machine"} <= types
        assert "tcg-accel" not in types         # amber cannot run a guest without KVM
        e = c.error("device-list-properties", {"typename": "virtio-net-pci"})
        assert e["class"] == "DeviceNotFound"
        opts = {o["option"]: {p["name"] for p in o["parameters"]}
                for o in c.ok("query-command-line-options")}
        assert opts["overcommit"] == {"mem-lock", "cpu-pm"}
        assert "sandbox" not in opts
        schema = c.ok("query-qmp-schema")
        names = {e["name"] for e in schema}
        assert {c_["name"] for c_ in c.ok("query-commands")} <= names
        assert {e_["name"] for e_ in c.ok("query-events")} <= names
        c.ok("quit")


REFUSED = [
    (["-usb"], "amber: -usb: amber's machine has no USB controller"),
    (["-machine", "pc,usb=on"], "amber: -machine pc,usb=on: usb=on: amber's machine has no "
     "USB controller"),
    (["-machine", "q35"], "amber: -machine q35: unsupported machine type 'q35'"),
    (["-machine", "pc,accel=tcg"], "amber: -machine accel=tcg: amber runs guests on kvm only"),
    (["-cpu", "Skylake-Client"], "amber: -cpu Skylake-Client: amber's vCPUs are the host's CPU"),
    (["-smp", "4,sockets=1,cores=4,threads=1"],
     "amber: -smp 4,sockets=1,cores=4,threads=1: amber gives every vCPU a socket of its own"),
    (["-smp", "2,maxcpus=8"], "amber: -smp 2,maxcpus=8: maxcpus=8: amber cannot hot-plug"),
    (["-overcommit", "mem-lock=on"], "amber: -overcommit mem-lock=on: mem-lock=on: amber does "
     "not lock guest memory"),
    (["-rtc", "base=localtime"], "amber: -rtc base=localtime: base=localtime: amber's machine "
     "has no RTC"),
    (["-device", '{"driver":"piix3-usb-uhci","id":"usb","bus":"pci.0","addr":"0x1.0x2"}'],
     "amber: -device {\"driver\":\"piix3-usb-uhci\",\"id\":\"usb\",\"bus\":\"pci.0\","
     "\"addr\":\"0x1.0x2\"}: amber's machine has no device 'piix3-usb-uhci'"),
    (["-chardev", "spicevmc,id=charchannel0,name=vdagent"], "amber: -chardev "
     "spicevmc,id=charchannel0,name=vdagent: amber has no 'spicevmc' chardev backend"),
    (["-audiodev", "pa,id=audio1"], "amber: -audiodev pa,id=audio1: amber's machine has no "
     "sound device"),
    (["-display", "vnc=:0"], "amber: -display vnc=:0: amber has no display"),
    (["-mon", "chardev=nope,mode=control"], "amber: -mon chardev=nope,mode=control: no "
     "-chardev with id 'nope'"),
    (["-uuid", "12345"], "amber: -uuid 12345: not a UUID"),
    (["-machine", "none", "-incoming", "defer"], "amber: -incoming needs a guest: -machine "
     "none has none"),
]


@pytest.mark.parametrize("args,message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused(amber_bin, tmp_path, args, message):
    r = vmmod.run(args, timeout=10, cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(message), r.stderr
    vmmod.no_sanitizer_report(r.stderr)


def test_passed_fd_must_be_listening(amber_bin, tmp_path):
    """A descriptor that is not a listening socket is refused before anything runs."""
    a, b = socket.socketpair()
    fd = a.fileno()
    r = subprocess.run([amber_bin, "-machine", "none", "-chardev",
                        "socket,id=m,fd=%d,server=on,wait=off" % fd,
                        "-mon", "chardev=m,mode=control"],
                       capture_output=True, text=True, timeout=10, pass_fds=(fd,))
    a.close()
    b.close()
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "amber: -chardev socket,id=m,fd=%d,server=on,wait=off: fd=%d: socket %d is not "
        "listening (server=on needs a listening socket)" % (fd, fd, fd)], r.stderr


@pytest.mark.parametrize("msg,name,prefix", [
    ("timestamp=on", "vm1", r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z amber: "),
    ("timestamp=on,guest-name=on", "guest=vm1,debug-threads=on",
     r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z vm1 amber: "),
    ("guest-name=on", "vm1", r"vm1 amber: "),
    ("timestamp=off,guest-name=off", "vm1", r"amber: "),
])
def test_msg_prefix(amber_bin, tmp_path, msg, name, prefix):
    """-msg as libvirt writes it: each message starts with the time (UTC, as
    QEMU writes it, which libvirt's log reader parses) and/or the guest's name."""
    r = vmmod.run(["-msg", msg, "-name", name, "-machine", "none", "-uuid", "12345"],
                  timeout=10, cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert re.fullmatch(prefix + r"-uuid 12345: not a UUID \(x{8}-x{4}-x{4}-x{4}-x{12}\)\n",
                        r.stderr), r.stderr
    if "timestamp=on" in msg:
        stamp = time.strptime(r.stderr[:19], "%Y-%m-%dT%H:%M:%S")
        assert abs(time.mktime(stamp) - time.mktime(time.gmtime())) < 60, r.stderr
