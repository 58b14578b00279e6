"""Save a running guest with `migrate` and bring it back with `-incoming`.

What a user checks: the source ends paused in `postmigrate` with the
migration `completed`; the destination, started with `-S`, holds exactly the
RAM the source had at the save (pmemsave dumps compared byte for byte, and
against `amber-img extract-ram`); that RAM satisfies the wave invariant at
the saved positions (scripts/wavecheck.py); after `cont` every vCPU moves
on from where it was saved.  Across vCPU counts, memory backends and the
file:, exec: and fd: channels.

The helpers here are shared by test_stream_errors.py and
test_analyze_migration.py.
"""
import filecmp
import json
import os
import subprocess
import sys
import time

import pytest

import qevm
import vm as vmmod
from vm import no_sanitizer_report
from qmp import Qmp

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WAVECHECK = os.path.join(ROOT, "scripts", "wavecheck.py")
MEM_MIB = 128
PAGE = 4096


# ---- helpers ----

def amber_img_path():
    return os.path.join(os.path.dirname(vmmod.AMBER), "tools", "amber-img")


def memory_args(backend, mem_mib=MEM_MIB):
    if backend == "ram":
        return ["-m", str(mem_mib)]
    assert backend in ("memfd", "hugetlb"), backend
    return ["-m", str(mem_mib), "-object",
            "memory-backend-memfd,id=mem,size=%dM,share=on%s" %
            (mem_mib, ",hugetlb=on" if backend == "hugetlb" else ""),
            "-machine", "memory-backend=mem"]


def guest_args(smp, backend="ram", mem_mib=MEM_MIB, append="workload=wave report=200"):
    return ["-smp", str(smp), "-append", append] + memory_args(backend, mem_mib)


def start_qmp(make_vm, args, pass_fds=(), env=None):
    """Start amber with a QMP socket (and fds, env); returns (vm, negotiated client)."""
    v = make_vm(list(args))
    sock = v.path("qmp.sock")
    v.args += ["-qmp", "unix:%s,server=on,wait=off" % sock]
    v.stderr_path = v.path("stderr.log")
    v._stderr = open(v.stderr_path, "w")
    v.proc = subprocess.Popen([v.binary] + v.args, stdin=subprocess.DEVNULL,
                              stdout=v._stderr, stderr=subprocess.STDOUT,
                              start_new_session=True, pass_fds=tuple(pass_fds), env=env)
    c = Qmp.connect(sock, timeout=30)
    c.negotiate()
    return v, c


def wait_migration(c, timeout=120):
    """Poll query-migrate until the migration has ended; returns the last answer."""
    deadline = time.monotonic() + timeout
    info = None
    while time.monotonic() < deadline:
        info = c.ok("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        time.sleep(0.05)
    raise AssertionError("migration still %r after %ss" % (info, timeout))


def wait_status(c, want, timeout=60):
    deadline = time.monotonic() + timeout
    st = None
    while time.monotonic() < deadline:
        st = c.ok("query-status")
        if st["status"] in want:
            return st
        time.sleep(0.05)
    raise AssertionError("status %r, expected one of %r" % (st, want))


def save(c, uri, timeout=120):
    """`migrate` to uri; returns query-migrate once completed."""
    c.ok("migrate", {"uri": uri})
    info = wait_migration(c, timeout)
    assert info["status"] == "completed", info
    return info


def pmemsave(c, path, mem_mib=MEM_MIB):
    c.ok("pmemsave", {"val": 0, "size": mem_mib << 20, "filename": path})
    assert os.path.getsize(path) == mem_mib << 20


def amber_img(*args, check=True):
    p = subprocess.run([amber_img_path()] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=300)
    if check:
        assert p.returncode == 0, "amber-img %s: %s" % (" ".join(map(str, args)), p.stderr)
    return p


def wavecheck(dump, mem_mib=MEM_MIB):
    """scripts/wavecheck.py on a guest-physical dump; asserts it holds, returns the JSON."""
    p = subprocess.run([sys.executable, WAVECHECK, dump, "--ram-mib", str(mem_mib), "--json"],
                       capture_output=True, text=True, timeout=120)
    res = json.loads(p.stdout)
    assert p.returncode == 0 and res["ok"], "wave invariant: %s" % p.stdout[-3000:]
    return res


def running_guest(make_vm, smp, backend="ram", mem_mib=MEM_MIB):
    """A source guest whose every vCPU has reported twice (records published)."""
    v, c = start_qmp(make_vm, guest_args(smp, backend, mem_mib))
    v.wait_reports(smp, rounds=2, timeout=90)
    return v, c


def save_running_guest(make_vm, path, smp=2, backend="ram", mem_mib=MEM_MIB):
    """Start a guest, save it to file:path; returns (vm, client, query-migrate)."""
    v, c = running_guest(make_vm, smp, backend, mem_mib)
    info = save(c, "file:" + path)
    return v, c, info


# ---- the checks of one save/restore ----

def check_source_after_save(c, info, mem_mib=MEM_MIB):
    assert c.ok("query-status")["status"] == "postmigrate"
    assert c.ok("query-status")["running"] is False
    ram = info["ram"]
    pages = (mem_mib << 20) // PAGE
    assert ram["total"] == mem_mib << 20, ram
    assert ram["remaining"] == 0, ram
    assert ram["duplicate"] + ram["normal"] == pages, ram
    assert ram["normal-bytes"] == ram["normal"] * PAGE, ram
    assert ram["transferred"] >= ram["normal-bytes"], ram


def check_image(path, info, tmp, mem_mib=MEM_MIB):
    """amber-img agrees with the stream and with the source's counters; returns
    the extracted guest-physical dump."""
    assert amber_img("verify", path).stdout.strip() == "OK"
    desc = json.loads(amber_img("info", "--json", path).stdout)
    assert desc["machine_type"] == "amber-pc-1.0"
    blocks = desc["ram"]["blocks"]
    assert sum(b["size"] for b in blocks) == mem_mib << 20
    assert sum(b["pages"]["normal"] for b in blocks) == info["ram"]["normal"]
    assert sum(b["pages"]["zero"] for b in blocks) == info["ram"]["duplicate"]
    names = {(d["name"], d["instance_id"]) for d in desc["vmdesc"]["devices"]}
    full = {(s["name"], s["instance_id"]) for s in desc["sections"] if s["type"] == "FULL"}
    assert names == full
    # The independent parser reads the same stream the same way.
    s = qevm.read(path)
    assert s.machine == "amber-pc-1.0"
    assert [(n, l) for n, l in s.ram_blocks()] == [(b["name"], b["size"]) for b in blocks]
    out = os.path.join(tmp, "extract")
    amber_img("extract-ram", path, out)
    return os.path.join(out, "physmem.raw")


def restore_and_check(make_vm, incoming_args, smp, backend, src_dump, saved, tmp,
                      mem_mib=MEM_MIB, pass_fds=(), after_start=None):
    """Start the destination paused (-S) with incoming_args, compare its RAM with
    the source's, then cont and check every vCPU moves on."""
    args = guest_args(smp, backend, mem_mib) + incoming_args + ["-S"]
    d, dc = start_qmp(make_vm, args, pass_fds=pass_fds)
    if after_start:
        after_start(d, dc)
    st = wait_status(dc, ("paused", "prelaunch"), timeout=120)
    assert st["running"] is False
    dst_dump = os.path.join(tmp, "dst.raw")
    pmemsave(dc, dst_dump, mem_mib)
    assert d.reports() == [], "the guest ran before cont: %s" % d.serial()
    assert filecmp.cmp(src_dump, dst_dump, shallow=False), "restored RAM differs"
    dc.ok("cont")
    d.wait_reports(smp, rounds=2, timeout=60)
    last = {}
    for r in d.reports():
        last[r["vcpu"]] = r
    assert sorted(last) == list(range(smp)), d.serial()
    for cpu in saved["vcpus"]:
        r = last[cpu["vcpu"]]
        assert (r["pass"], r["pos"]) > (cpu["pass"], cpu["pos"]), (cpu, r)
        assert r["writes"] > 0, r
    assert dc.ok("query-status")["status"] == "running"
    no_sanitizer_report(d.output())
    return d, dc


def full_round(make_vm, tmp_path, smp, backend, out_uri, in_uri, in_path,
               src_fds=(), dst_fds=(), before_save=None, after_start=None):
    tmp = str(tmp_path)
    v, c = running_guest(make_vm, smp, backend)
    if before_save:
        before_save(c)
    info = save(c, out_uri)
    check_source_after_save(c, info)
    src_dump = os.path.join(tmp, "src.raw")
    pmemsave(c, src_dump)
    saved = wavecheck(src_dump)
    assert len(saved["vcpus"]) == smp
    if in_path:
        phys = check_image(in_path, info, tmp)
        assert filecmp.cmp(src_dump, phys, shallow=False), "extract-ram differs from pmemsave"
        assert wavecheck(phys)["vcpus"] == saved["vcpus"]
    no_sanitizer_report(v.output())
    v.kill()
    restore_and_check(make_vm, in_uri, smp, backend, src_dump, saved, tmp,
                      pass_fds=dst_fds, after_start=after_start)


# ---- tests ----

@pytest.mark.parametrize("backend", ["ram", "memfd"])
@pytest.mark.parametrize("smp", [1, 4])
def test_file(tmpvm, tmp_path, smp, backend):
    img = str(tmp_path / "vm.img")
    full_round(tmpvm, tmp_path, smp, backend, "file:" + img, ["-incoming", "file:" + img], img)


def test_exec(tmpvm, tmp_path):
    img = str(tmp_path / "vm.img")
    full_round(tmpvm, tmp_path, 2, "ram", "exec:cat > '%s'" % img,
               ["-incoming", "exec:cat '%s'" % img], img)


def test_fd(tmpvm, tmp_path):
    """fd: both ways: getfd on the source; -incoming defer + getfd +
    migrate-incoming on the destination."""
    img = str(tmp_path / "vm.img")
    wfd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def give_fd(c):
        c.ok("getfd", {"fdname": "out"}, fds=[wfd])
        os.close(wfd)

    def incoming(d, dc):
        assert dc.ok("query-status")["status"] == "inmigrate"
        rfd = os.open(img, os.O_RDONLY)
        try:
            dc.ok("getfd", {"fdname": "in"}, fds=[rfd])
        finally:
            os.close(rfd)
        dc.ok("migrate-incoming", {"uri": "fd:in"})

    full_round(tmpvm, tmp_path, 2, "memfd", "fd:out", ["-incoming", "defer"], img,
               before_save=give_fd, after_start=incoming)


@pytest.mark.parametrize("detach", [True, False])
def test_hmp_migrate_and_info(tmpvm, tmp_path, detach):
    """The human monitor: `migrate [-d] URI`, then `info migrate` says completed.
    Without -d the command returns once the migration has ended."""
    img = str(tmp_path / "vm.img")
    v, c = running_guest(tmpvm, 1)
    out = c.ok("human-monitor-command",
               {"command-line": "migrate %sfile:%s" % ("-d " if detach else "", img)})
    assert out == "", out
    if not detach:
        assert c.ok("query-migrate")["status"] == "completed"
    assert wait_migration(c)["status"] == "completed"
    out = c.ok("human-monitor-command", {"command-line": "info migrate"})
    assert "completed" in out, out
    assert c.ok("query-status")["status"] == "postmigrate"
    assert amber_img("verify", img).stdout.strip() == "OK"


def test_incoming_runs_without_S(tmpvm, tmp_path):
    """Without -S the restored guest runs at once and keeps its progress."""
    img = str(tmp_path / "vm.img")
    v, c, info = save_running_guest(tmpvm, img, smp=2)
    dump = str(tmp_path / "src.raw")
    pmemsave(c, dump)
    saved = wavecheck(dump)
    v.kill()
    d, dc = start_qmp(tmpvm, guest_args(2) + ["-incoming", "file:" + img])
    d.wait_reports(2, rounds=2, timeout=60)
    assert dc.ok("query-status")["status"] == "running"
    first = {}
    for r in d.reports():
        first.setdefault(r["vcpu"], r)
    for cpu in saved["vcpus"]:
        r = first[cpu["vcpu"]]
        # The first report after the restore continues the saved pass.
        assert (r["pass"], r["pos"]) >= (cpu["pass"], cpu["pos"]), (cpu, r)
