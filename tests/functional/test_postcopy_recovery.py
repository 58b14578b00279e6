"""Postcopy recovery: a broken connection pauses the migration, and it resumes
with nothing lost.

What a user checks: after the switch, a link cut (by a TCP relay the test
controls) or `migrate-pause` leaves both sides `postcopy-paused`, alive;
`migrate-recover URI` on the destination (`postcopy-recover-setup`) and
`migrate URI resume=true` on the source reconnect them (`postcopy-recover`,
then `postcopy-active`), and the migration completes: the destination's
RAM passes the wave invariant and its guest runs on.  Any number of pauses
in one migration; a cut during recovery pauses again.  Bad input (a URI
that cannot be listened on, resume with nothing paused, a bitmap for an
unknown block or of the wrong length) is a clear error, and the migration
stays paused.
"""
import random
import socket
import struct
import time

import pytest

from test_postcopy import (MEM_MIB, FakeDestination, Proxy, block_of, hmp, huge_pages_free,
                           pc_source, postcopy_on, rp_msg, runs_on_and_holds,
                           start_and_switch, statuses, wait_incoming)
from test_precopy import events_on, free_port, listening, wait_migration_status
from test_saverestore import guest_args, start_qmp, wait_migration


# A wave over 48 MiB of a 128 MiB guest, rewritten faster than precopy sends
# it: after the switch the guest walks into pages still missing for seconds
# (a request's round trip each), while the push goes at 2 MiB/s.
RMEM_MIB = 128
WIDE = "workload=wave report=200 ws_mib=48"


def rc_source(tmpvm, smp=1, preempt=False, backend="ram"):
    s, sc = start_qmp(tmpvm, guest_args(smp, backend, mem_mib=RMEM_MIB, append=WIDE))
    s.wait_reports(smp, rounds=2, timeout=90)
    events_on(sc)
    postcopy_on(sc, preempt=preempt)
    sc.ok("migrate-set-parameters", {"downtime-limit": 0, "max-bandwidth": 128 << 20,
                                     "max-postcopy-bandwidth": 2 << 20})
    return s, sc


def rc_dest_args(smp, backend="ram"):
    return lambda v: guest_args(smp, backend, mem_mib=RMEM_MIB, append=WIDE) + \
        ["-incoming", "defer"]


def need_huge_pages():
    """Skip, saying why, unless two guests fit in free 2 MiB huge pages."""
    want = 2 * RMEM_MIB // 2
    if huge_pages_free() < want:
        pytest.skip("needs %d free 2 MiB huge pages (HugePages_Free is %d)" %
                    (want, huge_pages_free()))


def paused_pair(tmpvm, smp=1, preempt=False, backend="ram"):
    """A pair whose postcopy goes through a relay, with a slow push so the
    phase lasts; returns the pair, the relay and the switch done."""
    port = free_port()
    s, sc = rc_source(tmpvm, smp, preempt, backend)
    d, dc = listening(tmpvm, rc_dest_args(smp, backend))
    events_on(dc)
    postcopy_on(dc, preempt=preempt)
    dc.ok("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})
    proxy = Proxy(port)
    start_and_switch(sc, "tcp:127.0.0.1:%d" % proxy.port)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    wait_incoming(dc, "postcopy-active")
    return s, sc, d, dc, proxy


def both_paused(sc, dc):
    wait_migration_status(sc, "postcopy-paused", timeout=30)
    wait_incoming(dc, "postcopy-paused", timeout=30)


def resume(sc, dc):
    """migrate-recover and migrate resume=true through a new relay; returns it."""
    port = free_port()
    dc.ok("migrate-recover", {"uri": "tcp:127.0.0.1:%d" % port})
    assert dc.ok("query-migrate")["status"] in ("postcopy-recover-setup", "postcopy-recover",
                                                "postcopy-active")
    proxy = Proxy(port)
    sc.ok("migrate", {"uri": "tcp:127.0.0.1:%d" % proxy.port, "resume": True})
    return proxy


def check_completed(s, sc, d, dc, tmp_path, smp=1):
    info = wait_migration(sc, timeout=120)
    assert info["status"] == "completed", info
    assert sc.ok("query-status")["status"] == "postmigrate"
    wait_incoming(dc, "completed", timeout=60)
    runs_on_and_holds(d, dc, smp, tmp_path, RMEM_MIB)
    return info


@pytest.mark.parametrize("seed", range(5))
def test_cut_and_resume_four_times(tmpvm, tmp_path, seed):
    """Four cuts at random points of one postcopy phase (5 x 4 = 20 cut
    points): each time both sides pause, resume, and in the end every page
    is there."""
    rnd = random.Random(seed)
    s, sc, d, dc, proxy = paused_pair(tmpvm, smp=1 + seed % 2)
    cuts = 0
    for i in range(4):
        time.sleep(rnd.uniform(0.05, 0.4))
        if sc.ok("query-migrate")["status"] == "completed":
            break
        proxy.cut()
        cuts += 1
        both_paused(sc, dc)
        info = sc.ok("query-migrate")
        assert "error-desc" in info, info
        assert s.proc.poll() is None and d.proc.poll() is None
        assert sc.ok("query-status")["status"] == "finish-migrate"
        proxy = resume(sc, dc)
        if sc.ok("query-migrate")["status"] != "completed":
            wait_migration_status(sc, "postcopy-active", timeout=30)
    check_completed(s, sc, d, dc, tmp_path, smp=1 + seed % 2)
    # Every cut came inside the postcopy phase (it lasts seconds): 4 each time.
    assert cuts == 4
    assert statuses(sc, "completed").count("postcopy-recover") == cuts
    assert statuses(dc).count("postcopy-recover-setup") == cuts


def test_cut_and_resume_on_huge_pages(tmpvm, tmp_path):
    """A hugetlb memfd on both sides, three cuts: huge pages in flight at a
    cut come again whole (the destination's bitmap, widened to whole huge
    pages by the source), and in the end every page is there."""
    need_huge_pages()
    s, sc, d, dc, proxy = paused_pair(tmpvm, backend="hugetlb")
    for i in range(3):
        time.sleep(0.1 + 0.1 * i)
        if sc.ok("query-migrate")["status"] == "completed":
            break
        proxy.cut()
        both_paused(sc, dc)
        proxy = resume(sc, dc)
        if sc.ok("query-migrate")["status"] != "completed":
            wait_migration_status(sc, "postcopy-active", timeout=30)
    check_completed(s, sc, d, dc, tmp_path)


@pytest.mark.parametrize("side", ["source", "destination"])
def test_migrate_pause_by_command(tmpvm, tmp_path, side):
    s, sc, d, dc, proxy = paused_pair(tmpvm)
    (sc if side == "source" else dc).ok("migrate-pause")
    both_paused(sc, dc)
    out = hmp(sc, "info migrate")
    assert "Migration status: postcopy-paused" in out, out
    # Paused again is not active: migrate-pause says so.
    e = sc.error("migrate-pause")
    assert "only supported during postcopy-active" in e["desc"], e
    resume(sc, dc)
    check_completed(s, sc, d, dc, tmp_path)


def test_cut_during_recovery(tmpvm, tmp_path):
    """The new connection breaks before the pages flow again: paused again,
    and the next resume completes it."""
    s, sc, d, dc, proxy = paused_pair(tmpvm)
    proxy.cut()
    both_paused(sc, dc)
    # A destination that listens, and a relay cut as soon as the source connects.
    port = free_port()
    dc.ok("migrate-recover", {"uri": "tcp:127.0.0.1:%d" % port})
    relay = socket.socket()
    relay.bind(("127.0.0.1", 0))
    relay.listen(1)
    sc.ok("migrate", {"uri": "tcp:127.0.0.1:%d" % relay.getsockname()[1], "resume": True})
    conn, _ = relay.accept()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
    relay.close()
    wait_migration_status(sc, "postcopy-paused", timeout=30)
    # The destination still listens for the source: the same address, again.
    proxy = Proxy(port)
    sc.ok("migrate", {"uri": "tcp:127.0.0.1:%d" % proxy.port, "resume": True})
    check_completed(s, sc, d, dc, tmp_path)


@pytest.mark.parametrize("backend", ["ram", "hugetlb"])
def test_preempt_channel_comes_back(tmpvm, tmp_path, backend):
    """With postcopy-preempt the second connection is made again on resume
    (a unix: address: a TCP relay would carry only one connection); on huge
    pages each channel gathers its own, and a pause drops a part-gathered one."""
    if backend == "hugetlb":
        need_huge_pages()
    s, sc = rc_source(tmpvm, smp=2, preempt=True, backend=backend)
    d, dc = listening(tmpvm, rc_dest_args(2, backend))
    events_on(dc)
    postcopy_on(dc, preempt=True)
    first = "unix:" + d.path("mig.sock")
    dc.ok("migrate-incoming", {"uri": first})
    start_and_switch(sc, first)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    wait_incoming(dc, "postcopy-active")
    for i in range(2):
        (sc if i == 0 else dc).ok("migrate-pause")
        both_paused(sc, dc)
        again = "unix:" + d.path("recover%d.sock" % i)
        dc.ok("migrate-recover", {"uri": again})
        sc.ok("migrate", {"uri": again, "resume": True})
        if sc.ok("query-migrate")["status"] != "completed":
            wait_migration_status(sc, "postcopy-active", timeout=30)
    check_completed(s, sc, d, dc, tmp_path, smp=2)


# ---- bad input ----

def test_bad_recover_and_resume_requests(tmpvm):
    s, sc = pc_source(tmpvm)
    e = sc.error("migrate", {"uri": "tcp:127.0.0.1:1", "resume": True})
    assert e["desc"] == "Cannot resume if there is no paused migration", e
    e = sc.error("migrate-pause")
    assert "only supported during postcopy-active" in e["desc"], e
    d, dc = listening(tmpvm, lambda v: guest_args(1, mem_mib=MEM_MIB) + ["-incoming", "defer"])
    e = dc.error("migrate-recover", {"uri": "tcp:127.0.0.1:1"})
    assert e["desc"] == "Migrate recover can only be run when postcopy is paused.", e
    assert sc.ok("query-status")["status"] == "running"


def test_bad_uris_while_paused(tmpvm, tmp_path):
    s, sc, d, dc, proxy = paused_pair(tmpvm)
    proxy.cut()
    both_paused(sc, dc)
    # Cannot be listened on / not a socket: refused, still paused.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    e = dc.error("migrate-recover", {"uri": "tcp:127.0.0.1:%d" % busy.getsockname()[1]})
    assert "Address already in use" in e["desc"], e
    e = dc.error("migrate-recover", {"uri": "file:/tmp/x"})
    assert e["desc"] == "migrate-recover needs a unix: or tcp: URI, not 'file:/tmp/x'", e
    e = sc.error("migrate", {"uri": "exec:cat", "resume": True})
    assert e["desc"] == "resume needs a unix: or tcp: URI, not 'exec:cat'", e
    busy.close()
    assert dc.ok("query-migrate")["status"] == "postcopy-paused"
    # Nobody listens where the source reconnects: paused again, saying why.
    sc.ok("migrate", {"uri": "tcp:127.0.0.1:%d" % free_port(), "resume": True})
    deadline = time.monotonic() + 30
    while True:
        info = sc.ok("query-migrate")
        if info["status"] == "postcopy-paused" and "refused" in info.get("error-desc", ""):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    resume(sc, dc)
    check_completed(s, sc, d, dc, tmp_path)


def recv_bitmap(block, size, words, ending=0x0123456789abcdef):
    name = block.encode()
    return rp_msg(5, bytes([len(name)]) + name) + struct.pack(">Q", size) + words + \
        struct.pack(">Q", ending)


@pytest.mark.parametrize("bad,words", [
    (lambda b, n: recv_bitmap("nope", n, b"\0" * n), "block 'nope', which does not exist"),
    (lambda b, n: recv_bitmap(b, n - 8, b"\0" * (n - 8)), "expected"),
    (lambda b, n: recv_bitmap(b, n, b"\0" * n, ending=7), "not the marker"),
])
def test_bad_bitmap_pauses_again(tmpvm, bad, words):
    """A destination (played by the test) answers the recovery with a bad
    bitmap: the source stays paused and says why."""
    s, sc = pc_source(tmpvm)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 1 << 20})
    fake = FakeDestination()
    start_and_switch(sc, fake.uri)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    block = block_of(fake.bytes())
    fake.conn.shutdown(socket.SHUT_RDWR)
    wait_migration_status(sc, "postcopy-paused", timeout=30)
    again = FakeDestination()
    sc.ok("migrate", {"uri": again.uri, "resume": True})
    deadline = time.monotonic() + 10
    while again.conn is None or b"\x08\x00\x0a" not in again.bytes():
        assert time.monotonic() < deadline, "no RECV_BITMAP came"
        time.sleep(0.02)
    nbytes = ((MEM_MIB << 20) // 4096 + 7) // 8
    again.send(bad(block, (nbytes + 7) // 8 * 8))
    deadline = time.monotonic() + 30
    while True:
        info = sc.ok("query-migrate")
        if info["status"] == "postcopy-paused" and words in info.get("error-desc", ""):
            break
        assert time.monotonic() < deadline, info
        time.sleep(0.05)
    assert s.proc.poll() is None
