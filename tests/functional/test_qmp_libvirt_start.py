"""The QMP questions libvirt asks while it starts and runs a domain.

After the monitor connects, libvirt 9.0 asks query-chardev, query-cpus-fast
(and query-hotpluggable-cpus when the emulator has it), qom-list of the
first vCPU (its CPUID check), query-iothreads, qom-list /machine/peripheral,
query-block, and, for graphics or a balloon, set_password and query-balloon.
Under -machine none every answer is compared with Debian's QEMU 7.2 where
both can give one; what needs a guest is checked against one (skipped
without /dev/kvm).
"""
import json
import os
import re
import shutil
import subprocess

import pytest

import vm as vmmod
from qmp import Qmp

QEMU = shutil.which("qemu-system-x86_64")

# Questions whose answers amber and QEMU (-machine none) must give alike.
SAME = [
    ("query-iothreads", None),
    ("query-block", None),
    ("query-named-block-nodes", {"flat": True}),
    ("query-balloon", None),
    ("query-hotpluggable-cpus", None),
    ("qom-list", {"path": "/machine/peripheral"}),
    ("qom-list", {"path": "/machine/peripheral-anon"}),
    ("qom-list", {"path": "/machine/unattached/device[0]"}),
    ("qom-list", {"path": "peripheral"}),
    ("qom-list", {"path": ""}),
    ("qom-get", {"path": "/machine", "property": "type"}),
    ("qom-get", {"path": "/machine", "property": "peripheral"}),
    ("qom-get", {"path": "/machine/peripheral", "property": "type"}),
    ("qom-get", {"path": "/nope", "property": "type"}),
    ("qom-get", {"path": "/machine", "property": "nope"}),
]


def session(argv, requests, timeout=30):
    """Run argv with QMP on stdio, send requests, return (replies, output)."""
    lines = [{"execute": "qmp_capabilities"}]
    for name, args in requests:
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        lines.append(req)
    lines.append({"execute": "quit"})
    text = "".join(json.dumps(r) + "\n" for r in lines)
    p = subprocess.run(argv + ["-qmp", "stdio"], input=text, capture_output=True,
                       text=True, timeout=timeout)
    replies = []
    for line in p.stdout.splitlines():
        if line.startswith("char device redirected to "):
            continue            # a pty says where it is, before the greeting
        msg = json.loads(line)
        if "return" in msg or "error" in msg:
            replies.append(msg)
    assert len(replies) == len(lines), (p.stdout, p.stderr)
    return replies[1:-1], p.stderr


def amber_session(amber_bin, extra, requests):
    replies, err = session([amber_bin, "-machine", "none", "-nodefaults"] + extra, requests)
    vmmod.no_sanitizer_report(err)
    return replies


def qemu_session(extra, requests):
    if not QEMU:
        pytest.skip("qemu-system-x86_64 is not installed")
    return session([QEMU, "-machine", "none", "-nodefaults", "-display", "none"] + extra,
                   requests)[0]


def test_replies_match_qemu(amber_bin):
    ours = amber_session(amber_bin, [], SAME)
    theirs = qemu_session([], SAME)
    for (name, args), a, q in zip(SAME, ours, theirs):
        what = "%s %r" % (name, args)
        if "error" in q:
            assert "error" in a, what
            assert a["error"]["class"] == q["error"]["class"], what
        else:
            assert "return" in a, (what, a)
            assert a["return"] == q["return"], what


def test_tree_is_qemus_shape(amber_bin):
    """The root has QEMU's children; the machine's children are QEMU's containers."""
    reqs = [("qom-list", {"path": "/"}), ("qom-list", {"path": "/machine"}),
            ("qom-list", {"path": "/chardevs"})]
    ours = [r["return"] for r in amber_session(amber_bin, [], reqs)]
    theirs = [r["return"] for r in qemu_session([], reqs)]
    assert sorted(map(json.dumps, ours[0])) == sorted(map(json.dumps, theirs[0]))
    children = [p for p in theirs[1] if p["type"].startswith("child<") or p["name"] == "type"]
    assert sorted(map(json.dumps, ours[1])) == sorted(map(json.dumps, children))
    # QEMU's -qmp stdio chardev is a child of /chardevs as amber's is.
    assert {"name": "compat_monitor0", "type": "child<chardev-stdio>"} in ours[2]
    assert {"name": "compat_monitor0", "type": "child<chardev-stdio>"} in theirs[2]


def test_objects_as_qemu_lists_them(amber_bin):
    """-object makes /objects (QEMU makes it with the first one): each object
    a child of its type, the root then listing it."""
    extra = ["-object", "secret,id=masterKey0,format=raw,data=abc",
             "-object", "memory-backend-ram,id=pc.ram,size=1048576"]
    reqs = [("qom-list", {"path": "/"}), ("qom-list", {"path": "/objects"}),
            ("qom-get", {"path": "/objects/pc.ram", "property": "type"})]
    ours = [r["return"] for r in amber_session(amber_bin, extra, reqs)]
    theirs = [r["return"] for r in qemu_session(extra, reqs)]
    assert sorted(map(json.dumps, ours[0])) == sorted(map(json.dumps, theirs[0]))
    assert sorted(map(json.dumps, ours[1])) == sorted(map(json.dumps, theirs[1]))
    assert ours[2] == theirs[2] == "memory-backend-ram"


def test_query_chardev_as_libvirt_writes_them(amber_bin, tmp_path):
    sock = str(tmp_path / "mon.sock")
    spare = str(tmp_path / "spare.sock")
    extra = ["-chardev", "socket,id=charmonitor,path=%s,server=on,wait=off" % sock,
             "-mon", "chardev=charmonitor,id=monitor,mode=control",
             "-chardev", "null,id=spare",
             "-chardev", "file,id=log,path=%s" % (tmp_path / "log"),
             "-chardev", "pty,id=console", "-mon", "chardev=console,mode=readline",
             # Nothing uses these two: QEMU opens them all the same.
             "-chardev", "pty,id=sparepty",
             "-chardev", "socket,id=sparesock,path=%s,server=on,wait=off" % spare]
    ours = amber_session(amber_bin, extra, [("query-chardev", None)])[0]["return"]
    for path in (sock, spare):
        if os.path.exists(path):
            os.unlink(path)
    theirs = qemu_session(extra, [("query-chardev", None)])[0]["return"]
    by_label = {c["label"]: c for c in theirs}
    assert [c["label"] for c in ours] == ["charmonitor", "spare", "log", "console",
                                          "sparepty", "sparesock", "compat_monitor0"]
    assert set(by_label) == {c["label"] for c in ours}
    for c in ours:
        q = by_label[c["label"]]
        assert c["frontend-open"] == q["frontend-open"], c["label"]
        # Each pty is a new /dev/pts/N.
        assert re.sub(r"/dev/pts/\d+$", "PTS", c["filename"]) == \
            re.sub(r"/dev/pts/\d+$", "PTS", q["filename"]), (c, q)
    # Nobody connected to the monitor socket (the session talks over stdio).
    assert by_label["charmonitor"]["filename"] == "disconnected:unix:%s,server=on" % sock
    assert re.match(r"pty:/dev/pts/\d+$", by_label["console"]["filename"])
    assert re.match(r"pty:/dev/pts/\d+$", by_label["sparepty"]["filename"])
    assert by_label["sparesock"]["filename"] == "disconnected:unix:%s,server=on" % spare


def test_display_passwords_refused(amber_bin):
    reqs = [("set_password", {"protocol": "vnc", "password": "x"}),
            ("set_password", {"protocol": "spice", "password": "x"}),
            ("expire_password", {"protocol": "vnc", "time": "now"}),
            ("expire_password", {"protocol": "spice", "time": "never"})]
    ours = amber_session(amber_bin, [], reqs)
    theirs = qemu_session([], reqs)
    for (name, args), a, q in zip(reqs, ours, theirs):
        assert a["error"]["class"] == q["error"]["class"], (name, args)
        assert "amber has no" in a["error"]["desc"] or "no display" in a["error"]["desc"]


def test_new_commands_listed(amber_bin):
    """libvirt decides from query-commands what it may send."""
    names = {c["name"] for c in amber_session(amber_bin, [], [("query-commands", None)])[0]
             ["return"]}
    assert {"qom-list", "qom-get", "query-hotpluggable-cpus", "query-iothreads",
            "query-balloon", "query-chardev", "query-block", "query-named-block-nodes",
            "set_password", "expire_password"} <= names


def test_guest_vcpus_and_devices(tmpvm):
    """With a guest: vCPU slots, the vCPU objects and COM1 as libvirt adds it."""
    v = tmpvm(["-smp", "2", "-m", "64", "-S", "-nodefaults",
               "-chardev", "null,id=charserial0",
               "-device", "isa-serial,chardev=charserial0,id=serial0"], serial=False)
    sock = v.path("qmp.sock")
    v.args += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    v.start()
    with Qmp.connect(sock) as c:
        c.negotiate()
        cpus = c.ok("query-cpus-fast")
        slots = c.ok("query-hotpluggable-cpus")
        assert [s["qom-path"] for s in reversed(slots)] == [x["qom-path"] for x in cpus]
        for s, x in zip(reversed(slots), cpus):
            assert s["props"] == x["props"] and s["vcpus-count"] == 1
            assert s["type"] == "host-x86_64-cpu"
        path = cpus[1]["qom-path"]
        props = {p["name"] for p in c.ok("qom-list", {"path": path})}
        assert "feature-words" not in props and "socket-id" in props
        assert c.ok("qom-get", {"path": path, "property": "socket-id"}) == 1
        assert c.ok("qom-get", {"path": path, "property": "type"}) == "host-x86_64-cpu"
        assert {"name": "serial0", "type": "child<isa-serial>"} in \
            c.ok("qom-list", {"path": "/machine/peripheral"})
        chardevs = c.ok("query-chardev")
        assert {"label": "charserial0", "filename": "null", "frontend-open": True} in chardevs
        assert c.ok("qom-get", {"path": "/machine", "property": "type"}) == \
            "pc-i440fx-7.2-machine"
        c.ok("quit")
    v.wait()
