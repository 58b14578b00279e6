"""The built-in guest boots and works on every vCPU, with each RAM backend.

Each vCPU of the guest reports `vcpu=N pass=P pos=I ...` on COM1 every
`report=` ms; progress means (pass, pos) moves forward between reports.
"""
import os
import signal
import socket
import time

import pytest


REPORT = "report=200"


def backend_args(kind, tmpdir, size="256M"):
    if kind == "ram":
        return ["-m", size]
    if kind == "memfd":
        obj = "memory-backend-memfd,id=mem,size=%s,share=on" % size
    else:
        obj = "memory-backend-file,id=mem,size=%s,mem-path=%s" % (
            size, os.path.join(tmpdir, "guest-ram"))
    return ["-object", obj, "-machine", "memory-backend=mem"]


def assert_progress(reports, ncpus):
    by_cpu = {}
    for r in reports:
        by_cpu.setdefault(r["vcpu"], []).append(r)
    assert sorted(by_cpu) == list(range(ncpus)), reports
    for cpu, rs in by_cpu.items():
        assert len(rs) >= 2, (cpu, rs)
        first, last = rs[0], rs[-1]
        assert (last["pass"], last["pos"]) > (first["pass"], first["pos"]), (cpu, rs)
        assert last["writes"] > 0, (cpu, rs)


@pytest.mark.parametrize("backend", ["ram", "memfd", "file"])
@pytest.mark.parametrize("ncpus", [1, 4])
def test_progress(tmpvm, ncpus, backend):
    v = tmpvm()
    v.args += ["-smp", str(ncpus), "-append", REPORT] + backend_args(backend, v.tmp)
    with v:
        v.wait_reports(ncpus, rounds=3, timeout=60)
        assert_progress(v.reports(), ncpus)
        assert v.proc.poll() is None


def test_4g_guest_crosses_pci_hole(tmpvm):
    """RAM above 3 GiB is mapped at 4 GiB; the guest's partitions span it."""
    v = tmpvm(["-m", "4G", "-smp", "2", "-append", REPORT])
    with v:
        v.wait_reports(2, rounds=3, timeout=90)
        assert_progress(v.reports(), 2)


def test_start_paused_then_cont(tmpvm):
    v = tmpvm()
    hmp = v.path("hmp.sock")
    v.args += ["-S", "-smp", "2", "-append", REPORT,
               "-monitor", "unix:%s,server=on,wait=off" % hmp]
    with v:
        time.sleep(2)
        assert v.proc.poll() is None, v.output()
        assert v.reports() == [], v.serial()
        deadline = time.monotonic() + 10
        while not os.path.exists(hmp) and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(hmp)
            s.sendall(b"cont\n")
            v.wait_reports(2, rounds=2, timeout=60)
        assert_progress(v.reports(), 2)


@pytest.mark.parametrize("param", ["duration=1500", "passes=2"])
def test_guest_ends_run_with_exit_0(tmpvm, param):
    v = tmpvm(["-m", "64M", "-smp", "2", "-append", "%s %s" % (REPORT, param)])
    with v:
        assert v.wait(timeout=60) == 0, v.output()
        assert v.reports(), v.serial()


def test_sigterm_exits_0(tmpvm):
    v = tmpvm(["-smp", "2", "-append", REPORT])
    with v:
        v.wait_reports(2, rounds=1, timeout=60)
        v.proc.send_signal(signal.SIGTERM)
        assert v.wait(timeout=20) == 0, v.output()
        assert "terminating on signal 15" in v.output()
