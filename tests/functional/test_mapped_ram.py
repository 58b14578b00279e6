"""Snapshot files in the mapped-ram layout, and restores that run the guest at once.

What a user checks: with `mapped-ram` on, `migrate file:` (or fd: of a
regular file) writes every page at its fixed place; `-incoming file:` reads
the pages back (`multifd-channels` threads) into a guest whose RAM equals
the source's; `amber-img verify` and `extract-ram` read the image.  With
`postcopy-ram` set on a `-incoming defer` destination, `migrate-incoming`
of the image starts the guest as soon as its devices are loaded
(`postcopy-active`) and its pages follow until `completed`; started with
-S, such a destination holds exactly the saved RAM; running, its guest
moves on and its RAM holds the wave.  A background snapshot writes the
layout too.  Bad input: mapped-ram over a pipe, a socket or exec:; an
image cut short before the load (refused before any vCPU runs) and during
a lazy load (the guest pauses, amber stays up, query-migrate says why).
"""
import filecmp
import os
import struct

import pytest

from test_migrate_cmds import migration_events
from test_postcopy import hmp, runs_on_and_holds, wait_incoming
from test_precopy import events_on
from test_saverestore import (amber_img, check_source_after_save, guest_args, pmemsave,
                              restore_and_check, save, start_qmp, wait_migration,
                              wait_status, wavecheck)
from vm import no_sanitizer_report

MEM_MIB = 128
PAGE = 4096


def mapped_on(c, threads=None, direct=False):
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "mapped-ram", "state": True}]})
    params = {}
    if threads:
        params["multifd-channels"] = threads
    if direct:
        params["direct-io"] = True
    if params:
        c.ok("migrate-set-parameters", params)


def saved_image(make_vm, tmp, smp=2, backend="ram", threads=2, mem_mib=MEM_MIB,
                append="workload=wave report=200", dump=True):
    """A running guest saved with mapped-ram: (image, source dump, wavecheck, query-migrate);
    without dump, no dump is taken (None, None)."""
    v, c = start_qmp(make_vm, guest_args(smp, backend, mem_mib, append=append))
    v.wait_reports(smp, rounds=2, timeout=90)
    mapped_on(c, threads)
    img = os.path.join(tmp, "vm.img")
    info = save(c, "file:" + img)
    check_source_after_save(c, info, mem_mib)
    path = saved = None
    if dump:
        path = os.path.join(tmp, "src.raw")
        pmemsave(c, path, mem_mib)
        saved = wavecheck(path, mem_mib)
        assert len(saved["vcpus"]) == smp
    no_sanitizer_report(v.output())
    v.kill()
    return img, path, saved, info


def pages_offset(img):
    """The file offset of pc.ram's pages, from its mapped-ram header."""
    data = open(img, "rb").read(1 << 20)
    at = data.index(b"\x06pc.ram") + 7 + 8
    version, page_size, bitmap_offset, pages = struct.unpack(">IQQQ", data[at:at + 28])
    assert (version, page_size, bitmap_offset) == (1, PAGE, at + 28)
    assert pages % (1 << 20) == 0
    return pages


def check_image(img, dump, tmp):
    """amber-img reads the image as the loader does; extract-ram equals the source."""
    assert amber_img("verify", img).stdout.strip() == "OK"
    out = os.path.join(tmp, "extract")
    amber_img("extract-ram", img, out)
    assert filecmp.cmp(dump, os.path.join(out, "physmem.raw"), shallow=False)


def lazy_destination(make_vm, smp, backend, mem_mib=MEM_MIB, paused=False,
                     bandwidth=None, append="workload=wave report=200"):
    args = guest_args(smp, backend, mem_mib, append=append) + ["-incoming", "defer"]
    d, dc = start_qmp(make_vm, args + (["-S"] if paused else []))
    events_on(dc)
    dc.ok("migrate-set-capabilities",
          {"capabilities": [{"capability": "postcopy-ram", "state": True}]})
    if bandwidth:
        dc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": bandwidth})
    return d, dc


# ---- save and eager load ----

@pytest.mark.parametrize("smp,backend,threads", [(1, "ram", 1), (4, "memfd", 4),
                                                 (2, "ram", 2)])
def test_save_and_load(tmpvm, tmp_path, smp, backend, threads):
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, smp, backend, threads)
    pages_offset(img)
    check_image(img, dump, tmp)
    # Zero pages are holes: the image takes about what the data does.
    assert os.stat(img).st_blocks * 512 < info["ram"]["normal-bytes"] + (8 << 20)
    restore_and_check(tmpvm, ["-incoming", "file:" + img], smp, backend, dump, saved, tmp)


def test_fd_of_a_file_and_direct_io(tmpvm, tmp_path):
    """fd: of a regular file on the source, with direct-io; fd: on the destination."""
    tmp = str(tmp_path)
    img = os.path.join(tmp, "vm.img")
    v, c = start_qmp(tmpvm, guest_args(2))
    v.wait_reports(2, rounds=2, timeout=90)
    wfd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    c.ok("getfd", {"fdname": "out"}, fds=[wfd])
    os.close(wfd)
    mapped_on(c, threads=2)
    info = save(c, "fd:out")
    check_source_after_save(c, info)
    dump = os.path.join(tmp, "src.raw")
    pmemsave(c, dump)
    saved = wavecheck(dump)
    v.kill()
    check_image(img, dump, tmp)

    def incoming(d, dc):
        rfd = os.open(img, os.O_RDONLY)
        dc.ok("getfd", {"fdname": "in"}, fds=[rfd])
        os.close(rfd)
        dc.ok("migrate-incoming", {"uri": "fd:in"})

    restore_and_check(tmpvm, ["-incoming", "defer"], 2, "ram", dump, saved, tmp,
                      after_start=incoming)


def test_direct_io(tmpvm, tmp_path):
    tmp = str(tmp_path)
    v, c = start_qmp(tmpvm, guest_args(2))
    v.wait_reports(2, rounds=2, timeout=90)
    mapped_on(c, threads=2, direct=True)
    img = os.path.join(tmp, "vm.img")
    reply = c.cmd("migrate", {"uri": "file:" + img})
    if "error" in reply:
        assert "O_DIRECT" in reply["error"]["desc"], reply
        pytest.skip("the test directory's file system refuses O_DIRECT")
    info = wait_migration(c)
    assert info["status"] == "completed", info
    dump = os.path.join(tmp, "src.raw")
    pmemsave(c, dump)
    saved = wavecheck(dump)
    v.kill()
    check_image(img, dump, tmp)
    restore_and_check(tmpvm, ["-incoming", "file:" + img], 2, "ram", dump, saved, tmp)


def test_background_snapshot(tmpvm, tmp_path):
    """The guest keeps writing; the image holds it at one instant, in the mapped layout."""
    tmp = str(tmp_path)
    v, c = start_qmp(tmpvm, guest_args(2))
    v.wait_reports(2, rounds=2, timeout=90)
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "background-snapshot", "state": True}]})
    mapped_on(c, threads=2)
    img = os.path.join(tmp, "vm.img")
    info = save(c, "file:" + img)
    assert c.ok("query-status")["status"] == "running"
    assert info["ram"]["remaining"] == 0, info
    pages_offset(img)
    assert amber_img("verify", img).stdout.strip() == "OK"
    out = os.path.join(tmp, "extract")
    amber_img("extract-ram", img, out)
    wavecheck(os.path.join(out, "physmem.raw"))
    v.kill()
    d, dc = start_qmp(tmpvm, guest_args(2) + ["-incoming", "file:" + img, "-S"])
    wait_status(dc, ("paused", "prelaunch"), timeout=120)
    dst = os.path.join(tmp, "dst.raw")
    pmemsave(dc, dst)
    assert filecmp.cmp(dst, os.path.join(out, "physmem.raw"), shallow=False)
    dc.ok("cont")
    d.wait_reports(2, rounds=2, timeout=60)


# ---- lazy restore ----

def test_lazy_restore_paused_holds_the_image(tmpvm, tmp_path):
    """-S: nothing runs, the loader fills every page: RAM equals the saved one."""
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, 2, "ram")
    d, dc = lazy_destination(tmpvm, 2, "ram", paused=True)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    done = wait_incoming(dc, "completed", timeout=120)
    assert migration_events(dc, "completed")[-2:] == ["postcopy-active", "completed"]
    ram = done["ram"]
    assert ram["total"] == MEM_MIB << 20 and ram["remaining"] == 0, ram
    assert ram["normal"] == info["ram"]["normal"], (ram, info["ram"])
    assert ram["normal"] + ram["duplicate"] == (MEM_MIB << 20) // PAGE, ram
    assert len(done["postcopy-latency-dist"]) > 0
    assert d.reports() == []
    dst = os.path.join(tmp, "dst.raw")
    pmemsave(dc, dst)
    assert filecmp.cmp(dump, dst, shallow=False), "lazily restored RAM differs"
    dc.ok("cont")
    d.wait_reports(2, rounds=2, timeout=60)
    no_sanitizer_report(d.output())


@pytest.mark.parametrize("smp,backend", [(1, "ram"), (4, "memfd")])
def test_lazy_restore_runs_at_once(tmpvm, tmp_path, smp, backend):
    """The guest runs while its pages come; those it touches first are faults."""
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, smp, backend)
    # Held to 32 MiB/s, the loader leaves the guest pages to fault on.
    d, dc = lazy_destination(tmpvm, smp, backend, bandwidth=32 << 20)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    wait_status(dc, ("running",), timeout=60)
    d.wait_reports(smp, rounds=1, timeout=60)
    done = wait_incoming(dc, "completed", timeout=120)
    assert done["ram"]["postcopy-requests"] > 0, done
    assert done["ram"]["remaining"] == 0, done
    assert "postcopy-active" in migration_events(dc, "completed")
    # The guest went on from where it was saved.
    last = {r["vcpu"]: r for r in d.reports()}
    for cpu in saved["vcpus"]:
        assert (last[cpu["vcpu"]]["pass"], last[cpu["vcpu"]]["pos"]) > (cpu["pass"], cpu["pos"])
    runs_on_and_holds(d, dc, smp, tmp_path, MEM_MIB)
    no_sanitizer_report(d.output())


def test_lazy_restore_big_sparse_guest(tmpvm, tmp_path):
    """4 GiB of RAM, 256 MiB of it written: running at once, completed soon after."""
    tmp = str(tmp_path)
    append = "workload=wave report=200 ws_mib=256"
    img, _, _, info = saved_image(tmpvm, tmp, 2, "ram", mem_mib=4096, append=append,
                                  dump=False)
    assert info["ram"]["normal-bytes"] <= 300 << 20, info
    d, dc = lazy_destination(tmpvm, 2, "ram", mem_mib=4096, append=append)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    wait_status(dc, ("running",), timeout=60)
    done = wait_incoming(dc, "completed", timeout=180)
    assert done["ram"]["total"] == 4096 << 20
    assert done["ram"]["normal"] == info["ram"]["normal"]
    before = len(d.reports())
    d.wait_reports(2, rounds=2, timeout=60)
    assert len(d.reports()) > before


# ---- zero-copy restore ----

def zero_copy_destination(make_vm, smp, backend="ram", paused=True):
    args = guest_args(smp, backend) + ["-incoming", "defer"] + (["-S"] if paused else [])
    d, dc = start_qmp(make_vm, args)
    dc.ok("migrate-set-capabilities",
          {"capabilities": [{"capability": "x-zero-copy-restore", "state": True}]})
    return d, dc


def test_zero_copy_restore(tmpvm, tmp_path):
    """The image's pages are the guest's RAM: equal to the saved one, the guest
    runs on it, the image cannot be saved over, and a save elsewhere is whole."""
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, 2, "ram")
    before = open(img, "rb").read()
    d, dc = zero_copy_destination(tmpvm, 2)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    assert wait_incoming(dc, "completed", timeout=60)["status"] == "completed"
    dst = os.path.join(tmp, "dst.raw")
    pmemsave(dc, dst)
    assert filecmp.cmp(dump, dst, shallow=False), "zero-copy restored RAM differs"
    assert d.reports() == []
    dc.ok("cont")
    d.wait_reports(2, rounds=2, timeout=60)
    # The guest's writes are its own: the image is as saved.
    assert open(img, "rb").read() == before
    e = dc.error("migrate", {"uri": "file:" + img})
    assert "holds the memory of RAM block 'pc.ram'" in e["desc"], e
    assert dc.ok("query-status")["status"] == "running"
    mapped_on(dc)
    again = os.path.join(tmp, "again.img")
    save(dc, "file:" + again)
    out = os.path.join(tmp, "again")
    amber_img("extract-ram", again, out)
    wavecheck(os.path.join(out, "physmem.raw"))
    no_sanitizer_report(d.output())


def test_zero_copy_refused(tmpvm, tmp_path):
    tmp = str(tmp_path)
    img, _, _, _ = saved_image(tmpvm, tmp, 1, "ram", dump=False)
    d, dc = zero_copy_destination(tmpvm, 1)
    e = dc.error("migrate-set-capabilities",
                 {"capabilities": [{"capability": "postcopy-ram", "state": True}]})
    assert e["desc"] == ("Capability 'x-zero-copy-restore' cannot be used with "
                         "'postcopy-ram'"), e
    dc.ok("quit")
    # Shared memory cannot become a private mapping of the image.
    d, dc = zero_copy_destination(tmpvm, 1, backend="memfd")
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    assert d.proc.wait(timeout=60) == 1
    assert "it needs memory-backend-ram" in d.output()
    # A plain stream has no pages to map.
    v, c = start_qmp(tmpvm, guest_args(1))
    plain = os.path.join(tmp, "plain.img")
    save(c, "file:" + plain)
    v.kill()
    d, dc = zero_copy_destination(tmpvm, 1)
    dc.ok("migrate-incoming", {"uri": "file:" + plain})
    assert d.proc.wait(timeout=60) == 1
    assert "this stream was not saved with mapped-ram" in d.output()


# ---- bad input ----

def test_refused_without_a_file(tmpvm, tmp_path):
    v, c = start_qmp(tmpvm, guest_args(1))
    mapped_on(c)
    for uri in ("unix:%s" % (tmp_path / "sock"), "tcp:127.0.0.1:1", "exec:cat > /dev/null"):
        e = c.error("migrate", {"uri": uri})
        assert "mapped-ram gives every page a fixed place in a file" in e["desc"], e
    r, w = os.pipe()
    c.ok("getfd", {"fdname": "pipe"}, fds=[w])
    os.close(w)
    e = c.error("migrate", {"uri": "fd:pipe"})
    assert "'fd:pipe' is not one" in e["desc"], e
    os.close(r)
    e = c.error("migrate-set-parameters", {"multifd-channels": 0})
    assert "between 1 and 255" in e["desc"], e
    assert c.ok("query-migrate-parameters")["multifd-channels"] == 2
    assert "multifd-channels: 2" in hmp(c, "info migrate_parameters")
    assert c.ok("query-status")["status"] == "running"


def test_truncated_before_the_load(tmpvm, tmp_path):
    """Cut inside the pages: refused before any vCPU runs."""
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, 1, "ram")
    os.truncate(img, pages_offset(img) + (MEM_MIB << 20) // 2)
    d, dc = lazy_destination(tmpvm, 1, "ram")
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    assert d.proc.wait(timeout=60) == 1
    assert "do not fit between its bitmap" in d.output()
    assert d.reports() == []


def test_truncated_during_a_lazy_load(tmpvm, tmp_path):
    """The guest pauses where a page cannot be read; amber stays up and says why."""
    tmp = str(tmp_path)
    img, dump, saved, info = saved_image(tmpvm, tmp, 1, "ram")
    start = pages_offset(img)
    # The loader creeps at 1 MiB/s: it is still at the start when the file is cut.
    d, dc = lazy_destination(tmpvm, 1, "ram", bandwidth=1 << 20)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    wait_incoming(dc, "postcopy-active")
    os.truncate(img, start + (2 << 20))
    failed = wait_incoming(dc, "failed", timeout=60)
    assert "the file ends at offset" in failed["error-desc"], failed
    assert dc.event("STOP", timeout=30)
    st = dc.ok("query-status")
    assert st["running"] is False and st["status"] == "paused", st
    assert d.proc.poll() is None
    # Its missing pages would be saved as zeros: no save may start.
    err = dc.error("migrate", {"uri": "file:" + os.path.join(tmp, "again.img")})
    assert "the guest's memory is incomplete" in err["desc"], err
    assert not os.path.exists(os.path.join(tmp, "again.img"))
    dc.ok("quit")
    assert d.proc.wait(timeout=30) == 0
