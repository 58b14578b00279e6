#!/usr/bin/env python3
"""Where a guest's vCPUs spend a background snapshot: a scheduler trace.

Boots one load of the bgsnap scenario under one VMM, takes one background
snapshot (or, with --floor UNIT, the wpfloor scenario's throttled snapshot,
cancelled after --wf-window seconds) while a private tracefs instance records
the kernel's scheduler events (switch, waking, wakeup, migrate), and accounts
for every moment a vCPU thread was off its CPU:
- asleep: it blocked (under amber, in a write-protect fault, or on a lock)
  until something woke it; the waker is named;
- runnable: woken, but waiting for a CPU;
- preempted: taken off a CPU while it could still run.
It also gives the CPU time of every thread over the window, and, for the
longest episodes, what ran on each CPU meanwhile.  The guest's own largest
stall in the window is printed beside it.

Needs root (tracefs).  Example:
  python3 tests/bench/schedtrace.py --load busy --vmm amber-64k
"""
import argparse
import collections
import os
import re
import shutil
import sys
import tempfile

import benchlib as bl
import bgsnap
import wpfloor

TRACEFS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
EVENTS = ("sched/sched_switch", "sched/sched_waking", "sched/sched_wakeup",
          "sched/sched_migrate_task")
BUFFER_KB = 65536           # per CPU; a busy 1 s window needs about 10 MiB
LINE = re.compile(r"^\s*(.+)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+\.\d+): (\w+): (.*)$")
SWITCH = re.compile(r"prev_comm=(.*) prev_pid=(\d+) prev_prio=-?\d+ prev_state=(\S+) "
                    r"==> next_comm=(.*) next_pid=(\d+)")
WAKE = re.compile(r"comm=(.*) pid=(\d+) prio=-?\d+ target_cpu=(\d+)")
MIGRATE = re.compile(r"comm=(.*) pid=(\d+) prio=-?\d+ orig_cpu=(\d+) dest_cpu=(\d+)")
KINDS = (("asleep", "asleep until woken"),
         ("runnable", "woken, waiting for a CPU"),
         ("preempted", "preempted"))


class SchedTrace:
    """A tracefs instance of its own, so that nothing else tracing is touched."""

    def __init__(self):
        root = next((p for p in TRACEFS if os.path.isdir(os.path.join(p, "instances"))), None)
        if root is None or not os.access(os.path.join(root, "instances"), os.W_OK):
            raise SystemExit("schedtrace: needs a writable tracefs (%s): run as root"
                             % " or ".join(TRACEFS))
        self.dir = os.path.join(root, "instances", "amber-schedtrace-%d" % os.getpid())
        os.mkdir(self.dir)
        self.text = ""
        self.vcpus = {}
        try:
            # A new instance records at once: not while the guest warms up.
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", str(BUFFER_KB))
            # time.monotonic() is CLOCK_MONOTONIC: the guest's reports line up.
            self._write("trace_clock", "mono")
            for ev in EVENTS:
                self._write(os.path.join("events", ev, "enable"), "1")
        except OSError:
            self.close()
            raise

    def _write(self, name, value):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(value)

    def start(self, g):
        # By QMP, not by name: QEMU names its threads only when asked to.
        self.vcpus = {c["thread-id"]: "CPU %d" % c["cpu-index"]
                      for c in g.qmp.ok("query-cpus-fast")}
        self._write("trace", "")
        self._write("tracing_on", "1")

    def stop(self, g):
        self._write("tracing_on", "0")
        with open(os.path.join(self.dir, "trace")) as f:
            self.text = f.read()
        if "LOST" in self.text:
            print("schedtrace: the trace buffer overflowed, figures are partial",
                  file=sys.stderr)

    def close(self):
        # Removing the instance drops its buffer; it needs its events off.
        for ev in EVENTS:
            try:
                self._write(os.path.join("events", ev, "enable"), "0")
            except OSError:
                pass
        os.rmdir(self.dir)


def parse(text):
    """(t, cpu, current comm, current pid, event, fields) per traced line."""
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            yield (float(m.group(4)), int(m.group(3)), m.group(1), int(m.group(2)),
                   m.group(5), m.group(6))


class Accounting:
    """Run segments of every CPU and off-CPU episodes of the vCPU threads.

    On this host the trace misses some switches out of the idle task (on
    one CPU, all of them), so a switch in is also inferred when a thread
    shows up running on a CPU believed idle: from the wake-up or the
    migration that sent it there, else from its first event."""

    def __init__(self, vcpus, t0, t1):
        self.vcpus, self.t0, self.t1 = vcpus, t0, t1
        self.episodes = []      # (vcpu, kind, start, length, waker)
        self.segments = collections.defaultdict(list)   # cpu -> [(start, end, comm)]
        self.running = {}       # cpu -> (comm, pid, since)
        self.off = {}           # vcpu -> [kind, since, waker, woken at]
        self.sent = {}          # (cpu, pid) -> when woken onto that idle cpu

    def switch(self, t, cpu, comm, pid):
        if cpu in self.running and t > self.running[cpu][2]:
            c, _, since = self.running[cpu]
            self.segments[cpu].append((since, t, c))
        self.running[cpu] = (comm, pid, t)
        for c in list(self.running):
            self.sent.pop((c, pid), None)
        if pid in self.off:
            self.back(pid, t)

    def back(self, tid, t):
        kind, since, waker, woken = self.off.pop(tid)
        if woken is not None:
            self.note(tid, "asleep", since, woken - since, waker)
            self.note(tid, "runnable", woken, t - woken, waker)
        else:
            self.note(tid, kind, since, t - since, waker)

    def note(self, tid, kind, since, length, waker):
        if self.t0 <= since <= self.t1:
            self.episodes.append((tid, kind, since, max(0.0, length), waker))

    def line(self, t, cpu, comm, pid, ev, fields):
        cur = self.running.get(cpu)
        if cur is None:
            self.running[cpu] = (comm, pid, t)      # the trace's first word on it
        elif pid and cur[1] == 0:
            start = self.sent.get((cpu, pid), t)
            # Only a wake-up since the CPU went idle can have sent it there.
            self.switch(start if start >= cur[2] else t, cpu, comm, pid)
        if ev == "sched_switch":
            m = SWITCH.match(fields)
            if not m:
                return
            prev, state = int(m.group(2)), m.group(3)
            nxt, ncomm = int(m.group(5)), m.group(4)
            if prev in self.vcpus:
                self.off[prev] = ["preempted" if state.startswith("R") else "asleep",
                                  t, None, None]
            self.switch(t, cpu, ncomm, nxt)
        elif ev == "sched_migrate_task":
            # A runnable thread pulled to an idle CPU: it runs from here.
            m = MIGRATE.match(fields)
            if m:
                dest = self.running.get(int(m.group(4)))
                if dest is not None and dest[1] == 0:
                    self.sent[(int(m.group(4)), int(m.group(2)))] = t
        elif ev in ("sched_waking", "sched_wakeup"):
            m = WAKE.match(fields)
            if not m:
                return
            tid, target = int(m.group(2)), int(m.group(3))
            if ev == "sched_wakeup":
                tcur = self.running.get(target)
                if tcur is not None and tcur[1] == 0:
                    self.sent[(target, tid)] = t
            if tid in self.off and self.off[tid][0] == "asleep":
                if ev == "sched_waking" and self.off[tid][2] is None:
                    self.off[tid][2] = comm     # the waker runs the waking
                elif ev == "sched_wakeup" and self.off[tid][3] is None:
                    self.off[tid][3] = t


def account(text, vcpus, t0, t1):
    """Off-CPU episodes of the vCPU threads that began in [t0, t1], and every
    CPU's run segments."""
    acc = Accounting(vcpus, t0, t1)
    for rec in parse(text):
        acc.line(*rec)
    return acc.episodes, acc.segments


def cpu_time(segments, t0, t1, cpus=None):
    """{comm: seconds} run in [t0, t1] on the given CPUs (default all)."""
    acc = collections.Counter()
    for cpu, segs in segments.items():
        if cpus is not None and cpu not in cpus:
            continue
        for s, e, comm in segs:
            o = min(e, t1) - max(s, t0)
            if o > 0:
                acc[comm] += o
    return acc


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] if values else 0


def report(title, trace, reports, t0, t1, top):
    vcpus = trace.vcpus
    episodes, segments = account(trace.text, vcpus, t0, t1)
    print("## %s\n" % title)
    stalls = {}
    for t, r in reports:
        if t0 < t <= t1 + 0.1:      # intervals that end in the window
            stalls[r["vcpu"]] = max(stalls.get(r["vcpu"], 0), r["maxstall_us"])
    print("Window %.0f ms. The guest's largest stall in it, per vCPU: %s.\n" % (
        (t1 - t0) * 1e3, ", ".join("vCPU %d %.1f ms" % (v, us / 1e3)
                                   for v, us in sorted(stalls.items())) or "no report"))
    print("| vCPU | off its CPU | episodes | total (ms) | p50 (us) | p99 (us) | max (us) |")
    print("|---|---|---|---|---|---|---|")
    for tid, name in sorted(vcpus.items(), key=lambda kv: kv[1]):
        for kind, what in KINDS:
            ds = [e[3] for e in episodes if e[0] == tid and e[1] == kind]
            if ds:
                print("| %s | %s | %d | %.1f | %.0f | %.0f | %.0f |" % (
                    name, what, len(ds), sum(ds) * 1e3, pct(ds, 0.5) * 1e6,
                    pct(ds, 0.99) * 1e6, max(ds) * 1e6))
    used = cpu_time(segments, t0, t1)
    print("\nCPU time in the window (ms) by thread name, %d CPUs (swapper: idle): %s.\n" % (
        len(segments), ", ".join("%s %.1f" % (comm, v * 1e3) for comm, v in used.most_common(12))))
    print("Longest episodes, with what ran on each CPU meanwhile (us):\n")
    print("| vCPU | at (ms) | off (us) | kind | woken by | %s |" % " | ".join(
        "CPU %d" % c for c in sorted(segments)))
    print("|---|---|---|---|---|" + "---|" * len(segments))
    for tid, kind, s, d, waker in sorted(episodes, key=lambda e: -e[3])[:top]:
        cells = []
        for c in sorted(segments):
            meanwhile = cpu_time(segments, s, s + d, {c})
            cells.append(", ".join("%s %.0f" % (comm, v * 1e6)
                                   for comm, v in meanwhile.most_common(3)))
        print("| %s | %.1f | %.0f | %s | %s | %s |" % (
            vcpus[tid], (s - t0) * 1e3, d * 1e6, kind, waker or "-", " | ".join(cells)))
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(bl.ROOT, "build"))
    ap.add_argument("--load", choices=sorted(bgsnap.LOADS), default="busy")
    ap.add_argument("--vmm", choices=bgsnap.VMMS, default="amber")
    ap.add_argument("--floor", type=int, metavar="UNIT",
                    help="the wpfloor scenario's run with this unit (bytes) instead")
    ap.add_argument("--top", type=int, default=12, help="longest episodes to list")
    ap.add_argument("--save-trace", metavar="PATH", help="also write the raw trace there")
    bgsnap.add_args(ap)
    wpfloor.add_args(ap)
    opts = ap.parse_args()
    opts.bg_params = dict(opts.bg_params or ())
    if opts.floor is not None and (opts.floor < 4096 or opts.vmm != "amber"):
        raise SystemExit("--floor needs a unit of at least 4096 bytes and --vmm amber")
    if opts.top < 0:
        raise SystemExit("--top must not be negative")
    bl.set_build(opts.build)
    trace = SchedTrace()
    tmp = tempfile.mkdtemp(prefix="amber-bench-")
    try:
        if opts.floor is not None:
            run = wpfloor.floor_run(opts.load, opts.floor, tmp, opts, probe=trace)
            title = "amber, %s, write-fault floor, %s units" % (
                opts.load, wpfloor.unit_name(opts.floor))
            end = "tc"
        else:
            run = bgsnap.snapshot_run(opts.load, opts.vmm, tmp, opts, probe=trace)
            title = "%s, %s, background snapshot" % (opts.vmm, opts.load)
            end = "t1"
        if "error" in run:
            raise SystemExit("schedtrace: %s" % run["error"])
        report(title, trace, run["reports"], run["t0"], run[end], opts.top)
        if opts.save_trace:
            with open(opts.save_trace, "w") as f:
                f.write(trace.text)
    finally:
        trace.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
