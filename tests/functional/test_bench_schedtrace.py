"""The accounting of tests/bench/schedtrace.py on hand-written traces in
tracefs's text format, including the switches this host's trace misses."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "bench"))
import schedtrace  # noqa: E402

VCPUS = {101: "CPU 0", 102: "CPU 1"}
NAMES = {0: "<idle>", 101: "CPU 0/KVM", 102: "CPU 1/KVM", 200: "bgs/fault0", 300: "mig/src"}


def comm(pid, cpu):
    return "swapper/%d" % cpu if pid == 0 else NAMES[pid]


def switch(t, cpu, prev, state, nxt):
    return "%16s-%-7d [%03d] d..2. %.6f: sched_switch: prev_comm=%s prev_pid=%d " \
           "prev_prio=120 prev_state=%s ==> next_comm=%s next_pid=%d next_prio=120" % (
               NAMES[prev], prev, cpu, t, comm(prev, cpu), prev, state, comm(nxt, cpu), nxt)


def wake(t, cpu, cur, ev, pid, target):
    return "%16s-%-7d [%03d] d..4. %.6f: %s: comm=%s pid=%d prio=120 target_cpu=%03d" % (
        NAMES[cur], cur, cpu, t, ev, NAMES[pid], pid, target)


def migrate(t, cpu, cur, pid, orig, dest):
    return "%16s-%-7d [%03d] d..2. %.6f: sched_migrate_task: comm=%s pid=%d prio=120 " \
           "orig_cpu=%d dest_cpu=%d" % (NAMES[cur], cur, cpu, t, NAMES[pid], pid, orig, dest)


def episodes(lines, t0=0.0, t1=10.0):
    eps, segs = schedtrace.account("\n".join(lines), VCPUS, t0, t1)
    # No CPU may run two things at once.
    for cpu, ss in segs.items():
        ss = sorted(ss)
        assert all(b[0] >= a[1] - 1e-9 for a, b in zip(ss, ss[1:])), (cpu, ss)
        assert all(e >= s for s, e, _ in ss), (cpu, ss)
    return sorted((VCPUS[tid], kind, round(s, 6), round(d, 6), w)
                  for tid, kind, s, d, w in eps), segs


def test_fault_then_wait_for_a_cpu():
    """A vCPU blocks, the fault thread wakes it, it waits for its CPU."""
    eps, segs = episodes([
        switch(1.000000, 0, 101, "S", 200),           # vCPU 0 blocks in a fault
        wake(1.000040, 0, 200, "sched_waking", 101, 0),
        wake(1.000041, 0, 200, "sched_wakeup", 101, 0),
        switch(1.000060, 0, 200, "S", 101),           # the fault thread sleeps
    ])
    assert eps == [("CPU 0", "asleep", 1.0, 0.000041, "bgs/fault0"),
                   ("CPU 0", "runnable", 1.000041, 0.000019, "bgs/fault0")]
    assert segs[0] == [(1.0, 1.00006, "bgs/fault0")]


def test_preempted():
    eps, _ = episodes([
        switch(2.000000, 1, 102, "R+", 300),          # the saver takes CPU 1
        switch(2.004000, 1, 300, "R", 102),
    ])
    assert eps == [("CPU 1", "preempted", 2.0, 0.004, None)]


def test_missed_switch_out_of_idle_uses_the_wakeup():
    """CPU 1's trace has no switch from idle: the vCPU woken onto it runs
    from its wake-up, not from the first event it happens to emit."""
    eps, segs = episodes([
        switch(3.000000, 1, 102, "S", 0),             # vCPU 1 blocks, CPU 1 idles
        wake(3.000100, 0, 200, "sched_waking", 102, 1),
        wake(3.000110, 1, 0, "sched_wakeup", 102, 1),
        # no switch swapper/1 ==> CPU 1/KVM here
        wake(3.002000, 1, 102, "sched_waking", 200, 0),   # its next fault
        switch(3.002001, 1, 102, "S", 0),
    ])
    assert ("CPU 1", "runnable", 3.00011, 0.0, "bgs/fault0") in eps
    assert ("CPU 1", "asleep", 3.0, 0.00011, "bgs/fault0") in eps
    assert (3.00011, 3.002001, "CPU 1/KVM") in segs[1]
    assert (3.0, 3.00011, "swapper/1") in segs[1]


def test_missed_switch_after_a_pull_uses_the_migration():
    """A preempted vCPU pulled to the idle CPU runs from the migration."""
    eps, segs = episodes([
        switch(4.000000, 1, 300, "S", 0),             # CPU 1 idles
        switch(4.001000, 0, 101, "R", 102),           # vCPU 0 preempted on CPU 0
        migrate(4.003000, 1, 0, 101, 0, 1),           # idle balance on CPU 1
        wake(4.009000, 1, 101, "sched_waking", 200, 1),
    ])
    assert eps == [("CPU 0", "preempted", 4.001, 0.002, None)]
    assert segs[1][-1] == (4.0, 4.003, "swapper/1")


def test_a_stale_wakeup_is_not_used():
    """A wake-up towards an idle CPU that the thread never took (it ran on
    the other one) must not date a much later appearance there."""
    eps, segs = episodes([
        switch(5.000000, 1, 300, "S", 0),             # CPU 1 idles
        switch(5.000000, 0, 101, "S", 200),           # vCPU 0 blocks
        wake(5.000050, 0, 200, "sched_wakeup", 101, 1),   # aimed at CPU 1 ...
        switch(5.000060, 0, 200, "S", 101),           # ... but ran on CPU 0
        switch(5.001000, 0, 101, "S", 0),             # blocks again, CPU 0 idles
        switch(5.002000, 1, 0, "R", 300),             # CPU 1 busy, then idle
        switch(5.003000, 1, 300, "S", 0),
        wake(5.004000, 1, 101, "sched_waking", 200, 1),   # vCPU 0 on CPU 1, unannounced
    ])
    assert (5.003, 5.004, "swapper/1") in segs[1]
    assert not any(e[0] == "CPU 0" and e[1] == "runnable" and e[3] > 0.001 for e in eps)


def test_episodes_outside_the_window_are_left_out():
    eps, _ = episodes([
        switch(1.0, 0, 101, "R", 300),
        switch(1.5, 0, 300, "R", 101),
        switch(3.0, 0, 101, "R", 300),
        switch(3.1, 0, 300, "R", 101),
    ], t0=2.0, t1=4.0)
    assert eps == [("CPU 0", "preempted", 3.0, 0.1, None)]


def test_needs_a_writable_tracefs(monkeypatch, tmp_path):
    monkeypatch.setattr(schedtrace, "TRACEFS", (str(tmp_path / "none"),))
    with pytest.raises(SystemExit) as e:
        schedtrace.SchedTrace()
    assert "needs a writable tracefs" in str(e.value)


@pytest.mark.parametrize("args, message", [
    (["--top", "-1"], "--top must not be negative"),
    (["--floor", "100"], "--floor needs a unit of at least 4096 bytes and --vmm amber"),
    (["--floor", "65536", "--vmm", "qemu"], "--floor needs a unit of at least 4096 bytes"),
])
def test_bad_arguments(args, message):
    """Refused before anything is traced or booted."""
    r = subprocess.run([sys.executable, schedtrace.__file__] + args,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr
