"""Postcopy live migration between amber processes.

What a user checks: with `postcopy-ram` on both sides, `migrate` runs as a
live migration until `migrate-start-postcopy`; then the source stops,
MIGRATION says `postcopy-active`, the guest runs on the destination at
once and its pages follow, those its vCPUs fault on first
(`postcopy-requests`).  The source ends `completed` in `postmigrate`; the
destination runs on, and its RAM, stopped and dumped, satisfies the wave
invariant.  A destination started with -S holds exactly the source's RAM.
Each page goes over once after the switch, however often it is asked for.

With postcopy-preempt the requested pages come over a second connection;
either side without it refuses before the switch.

Failure: before the switch as a precopy failure (the source runs on);
after it, the survivor is `postcopy-paused`, alive and answering, the
source's memory intact, and `migrate_cancel` is refused.  Bad input: the
capability missing on either side, a file: URI, `migrate-start-postcopy`
with nothing to switch, bad return-path messages, bad postcopy commands in
the stream: each a clear error naming what is wrong, never a crash.
"""
import filecmp
import os
import signal
import socket
import struct
import threading
import time

import pytest

import qevm
from test_migrate_cmds import migration_events
from test_precopy import events_on, free_port, listening, uri_for, wait_migration_status
from test_saverestore import (guest_args, pmemsave, start_qmp, wait_migration,
                              wait_status, wavecheck)

MEM_MIB = 64
# A guest that rewrites 16 MiB faster than 32 MiB/s sends it: precopy
# alone never converges.
HAMMER = "workload=wave report=200 ws_mib=16"
# Slower writes: after the switch the guest comes back to the pages still
# missing only every few seconds, so the postcopy phase lasts.
STEADY = "workload=wave report=200 ws_mib=16 rate=4000"


def postcopy_on(c, on=True, preempt=False):
    caps = [{"capability": "postcopy-ram", "state": on}]
    if preempt:
        caps.append({"capability": "postcopy-preempt", "state": True})
    c.ok("migrate-set-capabilities", {"capabilities": caps})


def hmp(c, line):
    return c.ok("human-monitor-command", {"command-line": line}).replace("\r\n", "\n")


def pc_source(make_vm, smp=1, backend="ram", append=HAMMER, preempt=False):
    s, sc = start_qmp(make_vm, guest_args(smp, backend, mem_mib=MEM_MIB, append=append))
    s.wait_reports(smp, rounds=2, timeout=90)
    events_on(sc)
    postcopy_on(sc, preempt=preempt)
    sc.ok("migrate-set-parameters", {"downtime-limit": 0, "max-bandwidth": 32 << 20})
    return s, sc


def pc_pair(make_vm, kind="unix", smp=1, backend="ram", append=HAMMER, paused=False,
            dest_cap=True, blocktime=False, preempt=False, dest_preempt=None, defer=True,
            dest_backend=None):
    """defer=False: the destination listens from its command line and takes
    its capabilities while it waits for the stream."""
    s, sc = pc_source(make_vm, smp, backend, append, preempt)
    uris = {}

    def args_of(v):
        uris["listen"], uris["uri"] = uri_for(kind, v)
        return guest_args(smp, dest_backend or backend, mem_mib=MEM_MIB, append=append) + \
            ["-incoming", "defer" if defer else uris["listen"]] + (["-S"] if paused else [])
    d, dc = listening(make_vm, args_of)
    events_on(dc)
    if dest_cap:
        postcopy_on(dc, preempt=preempt if dest_preempt is None else dest_preempt)
    if blocktime:
        dc.ok("migrate-set-capabilities",
              {"capabilities": [{"capability": "postcopy-blocktime", "state": True}]})
    if defer:
        dc.ok("migrate-incoming", {"uri": uris["listen"]})
    return s, sc, d, dc, uris["uri"]


def statuses(c, until=None):
    return migration_events(c, until, timeout=10)


def passes(c):
    return [e["data"]["pass"] for e in c.events if e["event"] == "MIGRATION_PASS"]


def start_and_switch(sc, uri, min_passes=2):
    """migrate, and migrate-start-postcopy once min_passes passes began (2:
    the first pass is out, so a slow push has only the rewritten pages to
    carry and the test stays short)."""
    sc.ok("migrate", {"uri": uri})
    deadline = time.monotonic() + 60
    while True:
        info = sc.ok("query-migrate")
        if info["status"] == "active" and info["ram"]["dirty-sync-count"] >= min_passes:
            break
        assert info["status"] in ("setup", "active") and time.monotonic() < deadline, info
        time.sleep(0.02)
    sc.ok("migrate-start-postcopy")


def wait_incoming(c, want, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        info = c.ok("query-migrate")
        if info.get("status") == want:
            return info
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


def check_destination_runs(d, dc, smp, tmp_path):
    """Completed, running on, and its RAM (stopped) holds the wave invariant."""
    wait_incoming(dc, "completed")
    # `setup` comes before `events` is on when -incoming names the address.
    got = statuses(dc, "completed")
    assert got in (["setup", "active", "postcopy-active", "completed"],
                   ["active", "postcopy-active", "completed"]), got
    runs_on_and_holds(d, dc, smp, tmp_path, MEM_MIB)


def runs_on_and_holds(d, dc, smp, tmp_path, mem_mib):
    """The destination's guest runs on; stopped, its RAM holds the wave."""
    wait_status(dc, ("running",))
    before = len(d.reports())
    d.wait_reports(smp, rounds=2, timeout=60)
    assert len(d.reports()) > before
    dc.ok("stop")
    dst = os.path.join(str(tmp_path), "dst.raw")
    pmemsave(dc, dst, mem_mib)
    wavecheck(dst, mem_mib)


def check_source_completed(sc, info):
    assert info["status"] == "completed", info
    assert sc.ok("query-status")["status"] == "postmigrate"
    assert statuses(sc, "completed") == ["setup", "active", "postcopy-active", "completed"]
    ram = info["ram"]
    assert ram["postcopy-bytes"] > 0 and ram["remaining"] == 0, ram
    assert ram["precopy-bytes"] + ram["downtime-bytes"] + ram["postcopy-bytes"] == \
        ram["transferred"], ram
    assert 0 <= info["downtime"] <= info["total-time"], info
    # The guest stopped once, at the switch, whose last sync began a pass.
    names = [e["event"] for e in sc.events]
    assert names.count("STOP") == 1 and "RESUME" not in names
    assert passes(sc) == list(range(1, len(passes(sc)) + 1)) and len(passes(sc)) >= 2, \
        passes(sc)


# ---- postcopy that works ----

@pytest.mark.parametrize("kind,smp,backend,preempt,defer", [
    ("unix", 1, "ram", False, True),
    ("tcp-any", 4, "memfd", False, False),
    ("unix", 4, "ram", True, True),
    ("tcp-any", 1, "memfd", True, False),
])
def test_postcopy_runs_on_destination(tmpvm, tmp_path, kind, smp, backend, preempt, defer):
    s, sc, d, dc, uri = pc_pair(tmpvm, kind, smp, backend, preempt=preempt, defer=defer)
    start_and_switch(sc, uri)
    check_source_completed(sc, wait_migration(sc, timeout=120))
    check_destination_runs(d, dc, smp, tmp_path)


def test_destination_paused_holds_the_source_ram(tmpvm, tmp_path):
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", 2, paused=True)
    start_and_switch(sc, uri, min_passes=3)
    check_source_completed(sc, wait_migration(sc, timeout=120))
    assert len(passes(sc)) >= 4, passes(sc)
    wait_incoming(dc, "completed")
    wait_status(dc, ("paused",))
    src, dst = os.path.join(str(tmp_path), "src.raw"), os.path.join(str(tmp_path), "dst.raw")
    pmemsave(sc, src, MEM_MIB)
    pmemsave(dc, dst, MEM_MIB)
    assert filecmp.cmp(src, dst, shallow=False), "destination RAM differs from the source"
    wavecheck(dst, MEM_MIB)
    # After cont the vCPUs go on from there.
    before = len(d.reports())
    dc.ok("cont")
    d.wait_reports(2, rounds=1, timeout=30)
    assert len(d.reports()) > before


@pytest.mark.parametrize("preempt", [False, True])
def test_faulted_pages_are_requested(tmpvm, tmp_path, preempt):
    """A slow push (max-postcopy-bandwidth): the running guest faults on pages
    still missing and asks for them; the switch was asked for at once, before
    most pages were ever sent.  HMP shows the same figures.  With
    postcopy-preempt the requested pages pass the push on their own channel."""
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", 2, blocktime=True, preempt=preempt)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 4 << 20})
    assert sc.ok("query-migrate-parameters")["max-postcopy-bandwidth"] == 4 << 20
    sc.ok("migrate", {"uri": uri})
    out = hmp(sc, "migrate_start_postcopy")
    assert out == "", out
    wait_migration_status(sc, "postcopy-active", timeout=60)
    out = hmp(sc, "info migrate")
    assert "Migration status: postcopy-active" in out and "postcopy request count:" in out
    info = wait_migration(sc, timeout=120)
    check_source_completed(sc, info)
    requests = info["ram"]["postcopy-requests"]
    assert requests > 0, info["ram"]
    check_destination_runs(d, dc, 2, tmp_path)
    # The destination's wait figures: every request was a vCPU's, each waited.
    dinfo = dc.ok("query-migrate")
    dist = dinfo["postcopy-latency-dist"]
    assert len(dist) == 24 and sum(dist) >= requests, dinfo
    assert len(dinfo["postcopy-vcpu-blocktime"]) == 2
    assert len(dinfo["postcopy-vcpu-latency"]) == 2
    assert dinfo["postcopy-latency"] > 0 and sum(dinfo["postcopy-vcpu-blocktime"]) > 0
    assert dinfo["postcopy-blocktime"] <= max(dinfo["postcopy-vcpu-blocktime"])
    out = hmp(dc, "info migrate")
    assert "Postcopy Blocktime (ms):" in out and "Postcopy Latency (ns):" in out


# ---- what is refused ----

def test_refused_without_capability_or_socket(tmpvm, tmp_path):
    s, sc = start_qmp(tmpvm, guest_args(1, mem_mib=MEM_MIB, append=HAMMER))
    e = sc.error("migrate-start-postcopy")
    assert "Enable postcopy with migrate_set_capability" in e["desc"], e
    assert "Enable postcopy" in hmp(sc, "migrate_start_postcopy")
    postcopy_on(sc)
    e = sc.error("migrate-start-postcopy")
    assert "Postcopy must be started after migration has been started" in e["desc"], e
    e = sc.error("migrate", {"uri": "file:%s" % (tmp_path / "x.img")})
    assert "postcopy-ram needs a socket" in e["desc"], e
    assert not os.path.exists(tmp_path / "x.img")
    e = sc.error("migrate-set-capabilities",
                 {"capabilities": [{"capability": "background-snapshot", "state": True}]})
    assert "'background-snapshot' cannot be used with 'postcopy-ram'" in e["desc"], e
    caps = {c["capability"]: c["state"] for c in sc.ok("query-migrate-capabilities")}
    assert caps["postcopy-ram"] and not caps["background-snapshot"]
    assert sc.ok("query-status")["status"] == "running"


def test_preempt_refused_without_postcopy_or_second_address(tmpvm):
    s, sc = start_qmp(tmpvm, guest_args(1, mem_mib=MEM_MIB, append=HAMMER))
    e = sc.error("migrate-set-capabilities",
                 {"capabilities": [{"capability": "postcopy-preempt", "state": True}]})
    assert e["desc"] == "Capability 'postcopy-preempt' needs 'postcopy-ram'", e
    postcopy_on(sc, preempt=True)
    a, b = socket.socketpair()
    sc.ok("getfd", {"fdname": "mig"}, fds=[a.fileno()])
    e = sc.error("migrate", {"uri": "fd:mig"})
    assert "postcopy-preempt opens a second connection" in e["desc"], e
    assert sc.ok("query-status")["status"] == "running"


@pytest.mark.parametrize("src,dst,words", [
    (True, False, "the destination did not take the second channel"),
    (False, True, "the source opened no second channel"),
])
def test_preempt_on_one_side_only(tmpvm, src, dst, words):
    """Either side without postcopy-preempt: refused before the switch, the
    source runs on."""
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", 1, preempt=src, dest_preempt=dst)
    sc.ok("migrate", {"uri": uri})
    sc.ok("migrate-start-postcopy")
    info = wait_migration(sc, timeout=60)
    assert info["status"] == "failed", info
    assert sc.ok("query-status")["status"] == "running"
    if src:
        assert words in info["error-desc"], info
    else:
        assert d.wait(timeout=30) == 1
        assert words in d.output(), d.output()


def refused_by_destination(s, sc, d, dc, uri, words):
    """migrate: the destination refuses the advice and exits 1 saying why;
    the source fails the migration and runs on."""
    sc.ok("migrate", {"uri": uri})
    assert d.wait(timeout=30) == 1
    assert words in d.output(), d.output()
    info = wait_migration(sc, timeout=30)
    assert info["status"] == "failed", info
    assert sc.ok("query-status")["status"] == "running"


def test_destination_without_capability(tmpvm):
    refused_by_destination(*pc_pair(tmpvm, "unix", 1, dest_cap=False),
                           "capability 'postcopy-ram' is off here")


def huge_pages_free():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free"):
                return int(line.split()[1])
    return 0


def need_huge_pages(vms):
    """Skip, saying why, unless vms guests of MEM_MIB fit in free 2 MiB huge pages."""
    want = vms * MEM_MIB // 2
    if huge_pages_free() < want:
        pytest.skip("needs %d free 2 MiB huge pages (HugePages_Free is %d; echo %d > "
                    "/proc/sys/vm/nr_hugepages)" % (want, huge_pages_free(), want))


@pytest.mark.parametrize("smp,preempt", [(1, False), (4, True)])
def test_postcopy_on_huge_pages(tmpvm, tmp_path, smp, preempt):
    """A hugetlb memfd on both sides: discards, requests and pages go a whole
    2 MiB page at a time, and the destination's RAM holds the wave."""
    need_huge_pages(2)
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", smp, "hugetlb", preempt=preempt)
    start_and_switch(sc, uri)
    info = wait_migration(sc, timeout=120)
    check_source_completed(sc, info)
    check_destination_runs(d, dc, smp, tmp_path)


def test_huge_pages_on_one_side_only(tmpvm):
    """Postcopy needs the same huge pages on both sides: ADVISE says so, and
    the source, still the only one running, runs on."""
    need_huge_pages(1)
    refused_by_destination(*pc_pair(tmpvm, "unix", 1, "hugetlb", dest_backend="ram"),
                           "postcopy needs the same huge pages on both sides")


# ---- failures around the switch ----

def slow_postcopy(tmpvm, smp=1, append=STEADY, paused=False):
    """A pair in postcopy-active whose push crawls (1 MiB/s)."""
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", smp, append=append, paused=paused)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 1 << 20})
    start_and_switch(sc, uri)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    wait_incoming(dc, "postcopy-active")
    return s, sc, d, dc


def test_source_killed_before_switch(tmpvm):
    s, sc, d, dc, uri = pc_pair(tmpvm, "unix", 1)
    sc.ok("migrate", {"uri": uri})
    wait_migration_status(sc, "active")
    os.killpg(s.proc.pid, signal.SIGKILL)
    assert d.wait(timeout=30) == 1
    assert "load of migration failed" in d.output()
    assert d.reports() == [] and "amber-guest" not in d.serial()


def test_destination_killed_before_switch(tmpvm):
    s, sc, d, dc, uri = pc_pair(tmpvm, "tcp-any", 1)
    sc.ok("migrate", {"uri": uri})
    wait_migration_status(sc, "active")
    time.sleep(0.2)
    os.killpg(d.proc.pid, signal.SIGKILL)
    info = wait_migration(sc, timeout=30)
    assert info["status"] == "failed", info
    assert sc.ok("query-status")["status"] == "running"
    s.wait_reports(1, rounds=1, timeout=30)


def test_source_killed_after_switch(tmpvm):
    s, sc, d, dc = slow_postcopy(tmpvm, smp=2)
    e = sc.error("migrate_cancel")
    assert "Postcopy migration in progress, cannot cancel" in e["desc"], e
    e = sc.error("cont")
    assert "Migration is not finalized yet" in e["desc"], e
    os.killpg(s.proc.pid, signal.SIGKILL)
    wait_incoming(dc, "postcopy-paused", timeout=30)
    assert "postcopy paused" in d.output()
    # Alive, answering, and not going anywhere by itself.
    time.sleep(1)
    assert d.proc.poll() is None
    assert dc.ok("query-status")["status"] in ("running", "paused")
    assert "postcopy-paused" in hmp(dc, "info migrate")
    # quit is the user's call, and works.
    dc.ok("quit")
    assert d.wait(timeout=30) == 0


def test_destination_killed_after_switch(tmpvm, tmp_path):
    # The destination does not run the guest: nothing but the slow push goes.
    s, sc, d, dc = slow_postcopy(tmpvm, append=HAMMER, paused=True)
    os.killpg(d.proc.pid, signal.SIGKILL)
    info = wait_migration_status(sc, "postcopy-paused", timeout=30)
    assert "error-desc" in info, info
    assert sc.ok("query-status")["status"] == "finish-migrate"
    assert "Postcopy migration in progress" in sc.error("migrate_cancel")["desc"]
    assert "Migration is not finalized yet" in sc.error("cont")["desc"]
    # The source's memory is the guest at the switch, whole.
    src = os.path.join(str(tmp_path), "src.raw")
    pmemsave(sc, src, MEM_MIB)
    wavecheck(src, MEM_MIB)
    time.sleep(0.5)
    assert s.proc.poll() is None
    sc.ok("quit")
    assert s.wait(timeout=30) == 0


class Proxy:
    """A TCP relay the test can cut."""

    def __init__(self, target_port):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.target = target_port
        self.socks = []
        threading.Thread(target=self._run, daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                b.sendall(data)
            # The end goes through too, as a link's would.
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _run(self):
        a, _ = self.srv.accept()
        b = socket.create_connection(("127.0.0.1", self.target))
        self.socks = [a, b]
        threading.Thread(target=self._pump, args=(a, b), daemon=True).start()
        threading.Thread(target=self._pump, args=(b, a), daemon=True).start()

    def cut(self):
        for s in self.socks:
            # shutdown, not just close: the relay threads still hold the sockets.
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass            # its peer went first
            s.close()
        self.srv.close()


def test_link_cut_after_switch(tmpvm):
    port = free_port()
    s, sc = pc_source(tmpvm)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 1 << 20})
    d, dc = listening(tmpvm, lambda v: guest_args(1, mem_mib=MEM_MIB, append=HAMMER) +
                      ["-incoming", "defer", "-S"])
    events_on(dc)
    postcopy_on(dc)
    dc.ok("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})
    proxy = Proxy(port)
    start_and_switch(sc, "tcp:127.0.0.1:%d" % proxy.port)
    wait_incoming(dc, "postcopy-active")
    time.sleep(0.3)
    proxy.cut()
    wait_migration_status(sc, "postcopy-paused", timeout=30)
    wait_incoming(dc, "postcopy-paused", timeout=30)
    assert s.proc.poll() is None and d.proc.poll() is None
    assert sc.ok("query-status")["status"] == "finish-migrate"


# ---- hostile input ----

def rp_msg(type_, payload=b""):
    return struct.pack(">HH", type_, len(payload)) + payload


def req_pages_id(block, start, length):
    name = block.encode()
    return rp_msg(3, struct.pack(">QI", start, length) + bytes([len(name)]) + name)


class FakeDestination:
    """Accepts the source's stream and keeps every byte; the test writes the
    return path by hand (after the PONG that lets the source switch)."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.uri = "tcp:127.0.0.1:%d" % self.srv.getsockname()[1]
        self.data = bytearray()
        self.conn = None
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        conn, _ = self.srv.accept()
        # PONG to the PING after ADVISE: postcopy's advice is taken.
        conn.sendall(rp_msg(2, struct.pack(">I", 1)))
        self.conn = conn
        while True:
            try:
                chunk = self.conn.recv(1 << 20)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def send(self, data):
        self.conn.sendall(data)

    def bytes(self):
        with self.lock:
            return bytes(self.data)


def block_of(stream_bytes):
    """The first RAM block name in the block list at the start of a stream."""
    at = stream_bytes.index(b"ram") + 3 + 8 + 8
    n = stream_bytes[at]
    return stream_bytes[at + 1:at + 1 + n].decode()


def records_after_switch(stream):
    """[(block, offset)] of the RAM records after PACKAGED, and the discarded pages."""
    seen_package, after, discarded = False, [], set()
    ram_ids = {s.section_id for s in stream.sections if s.type == qevm.START and s.name == "ram"}
    state = {}
    for it in stream.items:
        if isinstance(it, qevm.Command):
            if it.cmd == 7:
                seen_package = True
            elif it.cmd == 6:
                p = it.payload
                name = p[2:2 + p[1]].decode()
                body = p[3 + p[1]:]
                for i in range(0, len(body), 16):
                    start, length = struct.unpack(">QQ", body[i:i + 16])
                    discarded.update((name, off)
                                     for off in range(start, start + length, qevm.PAGE))
        elif it.section_id in ram_ids:
            for rec in qevm.ram_records(it.payload, state):
                if rec[0] == "page" and seen_package:
                    after.append((rec[1], rec[2]))
    return after, discarded


def test_each_page_once_after_the_switch(tmpvm):
    """A destination (played by the test) asks for pages, some twice, some
    never written since precopy sent them: after the switch each page goes
    out exactly once, and exactly the discarded ones."""
    s, sc = pc_source(tmpvm, smp=1)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 8 << 20})
    fake = FakeDestination()
    start_and_switch(sc, fake.uri)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    block = block_of(fake.bytes())
    asked = [(block, off) for off in (0x200000, 0x3000000, 0x3ff0000)]
    for b, off in asked + asked:
        fake.send(req_pages_id(b, off, 4096))
    # The source waits for SHUT once everything is out.
    deadline = time.monotonic() + 60
    while sc.ok("query-migrate")["ram"]["remaining"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    stream = qevm.parse(fake.bytes())
    fake.send(rp_msg(1, struct.pack(">I", 0)))
    info = wait_migration(sc, timeout=30)
    assert info["status"] == "completed", info
    assert info["ram"]["postcopy-requests"] == 6, info["ram"]
    after, discarded = records_after_switch(stream)
    assert len(after) == len(set(after)), "a page went out twice after the switch"
    assert set(after) == discarded and discarded


@pytest.mark.parametrize("msg,words", [
    (lambda b: req_pages_id("no-such-block", 0, 4096), "block 'no-such-block' does not exist"),
    (lambda b: rp_msg(4, struct.pack(">QI", 0, 4096)), "REQ_PAGES with no block named before"),
    (lambda b: req_pages_id(b, 4096, 100), "length 100 is not a multiple"),
    (lambda b: req_pages_id(b, 1 << 40, 4096), "is outside block"),
    (lambda b: rp_msg(77), "unknown message type 77"),
])
def test_bad_return_path_message(tmpvm, msg, words):
    """After the switch a bad message pauses the source, which says why."""
    s, sc = pc_source(tmpvm, smp=1)
    sc.ok("migrate-set-parameters", {"max-postcopy-bandwidth": 1 << 20})
    fake = FakeDestination()
    start_and_switch(sc, fake.uri)
    wait_migration_status(sc, "postcopy-active", timeout=60)
    fake.send(msg(block_of(fake.bytes())))
    info = wait_migration_status(sc, "postcopy-paused", timeout=30)
    assert words in info.get("error-desc", ""), info
    assert sc.ok("query-status")["status"] == "finish-migrate"


@pytest.mark.parametrize("msg,words", [
    (lambda b: rp_msg(77), "unknown message type 77"),
    # A destination asks for pages once the guest runs there, never before.
    (lambda b: req_pages_id(b, 0, 4096), "a page request before the switch to postcopy"),
])
def test_bad_return_path_message_before_switch(tmpvm, msg, words):
    s, sc = pc_source(tmpvm, smp=1)
    fake = FakeDestination()
    sc.ok("migrate", {"uri": fake.uri})
    wait_migration_status(sc, "active")
    deadline = time.monotonic() + 30
    while len(fake.bytes()) < 65536:    # the block list and pages after it are in
        assert time.monotonic() < deadline
        time.sleep(0.05)
    block = block_of(fake.bytes())
    fake.send(msg(block))
    info = wait_migration(sc, timeout=30)
    assert info["status"] == "failed" and words in info["error-desc"], info
    assert sc.ok("query-status")["status"] == "running"


def command(cmd, payload=b""):
    return struct.pack(">BHH", qevm.COMMAND, cmd, len(payload)) + payload


def stream_head(block, size):
    name = b"amber-pc-1.0"
    out = struct.pack(">II", qevm.MAGIC, qevm.VERSION)
    out += struct.pack(">BI", qevm.CONFIGURATION, len(name)) + name
    out += command(1) + command(3, struct.pack(">QQ", 4096, 4096))
    start = qevm.Section(qevm.START, 1, "ram", 0, 4, qevm.ram_setup_payload([(block, size)]))
    return out + start.header() + start.payload + struct.pack(">BI", qevm.FOOTER, 1)


def discard(block, ranges, version=0):
    name = block.encode()
    body = bytes([version, len(name)]) + name + b"\0"
    return command(6, body + b"".join(struct.pack(">QQ", a, n) for a, n in ranges))


@pytest.mark.parametrize("tail,words", [
    (lambda b: discard("nope", [(0, 4096)]), "block 'nope' is not in the stream's block list"),
    (lambda b: discard(b, [(100, 4096)]), "-byte pages inside block"),
    (lambda b: discard(b, [(0, 1 << 40)]), "-byte pages inside block"),
    (lambda b: discard(b, [(0, 4096)] * 13), "13"),
    (lambda b: discard(b, [(0, 4096)], version=9), "version"),
    (lambda b: command(7, struct.pack(">I", 1000)) + b"\0" * 10, "runs past the stream"),
    (lambda b: command(7, struct.pack(">I", 32 << 20)), "16777216"),
    (lambda b: command(7, struct.pack(">I", 5)) + command(5), "POSTCOPY_RUN before"),
    (lambda b: command(4), "not allowed here"),
    (lambda b: command(3, struct.pack(">QQ", 4096, 4096)), "POSTCOPY_ADVISE twice"),
    (lambda b: command(7, struct.pack(">I", 5)) + command(4) + b"\0", "without POSTCOPY_RUN"),
])
def test_bad_postcopy_command(tmpvm, tail, words):
    """A destination fed a bad postcopy command exits 1 naming it, never ran."""
    port = free_port()
    d, dc = listening(tmpvm, lambda v: guest_args(1, mem_mib=MEM_MIB) +
                      ["-incoming", "defer"])
    postcopy_on(dc)
    dc.ok("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})
    block = "pc.ram"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(stream_head(block, MEM_MIB << 20) + tail(block))
        conn.shutdown(socket.SHUT_WR)
        assert d.wait(timeout=30) == 1
    assert "load of migration failed" in d.output()
    assert words in d.output(), d.output()
    assert d.reports() == [] and "amber-guest" not in d.serial()
