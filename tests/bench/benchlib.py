"""Shared pieces of the migration benchmarks (bgsnap.py, precopy.py).

A `Guest` is one VMM process (amber or QEMU) running the built-in guest with
a QMP socket and its serial output in a file.  A thread tails that file and
timestamps each guest report line when it arrives, so a run yields a time
series per vCPU that can be laid against the moments the harness acted
(migrate sent, completion seen).  Only QEMU's QMP words are used, so the same
code drives both VMMs.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
import vm as vmmod  # noqa: E402
from qmp import Qmp  # noqa: E402

QEMU = shutil.which("qemu-system-x86_64")
VMM_LABEL = {"amber": "amber", "amber-direct": "amber, file: direct-io",
             "amber-64k": "amber, 64 KiB units",
             "amber-nowpu": "amber, no WP_UNPOPULATED",
             "qemu": "QEMU 7.2"}
# Features ANDed with the kernel's (docs/devel/background-snapshot.md): all but
# UFFD_FEATURE_WP_UNPOPULATED (1 << 13), as on a kernel older than 6.4.
NO_WP_UNPOPULATED_MASK = "0x%x" % ((1 << 64) - 1 - (1 << 13))


def set_build(build):
    vmmod.AMBER = os.path.join(os.path.abspath(build), "amber")
    vmmod.GUEST_ELF = os.path.join(os.path.abspath(build), "guest", "amber-guest.elf")


def tsc_khz():
    """The host TSC rate in kHz, for QEMU (amber passes its own to the guest)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 0


class SerialTail(threading.Thread):
    """Reads the serial file as it grows; keeps (arrival time, report) pairs."""

    def __init__(self, path, period=0.01):
        super().__init__(daemon=True)
        self.path, self.period = path, period
        self.reports = []          # (monotonic seconds, report dict)
        self.lines = []
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self):
        pos, partial = 0, ""
        while not self._halt.is_set():
            try:
                with open(self.path, errors="replace") as f:
                    f.seek(pos)
                    data = f.read()
                    pos = f.tell()
            except FileNotFoundError:
                data = ""
            now = time.monotonic()
            if data:
                text = partial + data
                *full, partial = text.split("\n")
                with self._lock:
                    for line in full:
                        self.lines.append(line)
                        for r in vmmod.parse_reports(line):
                            self.reports.append((now, r))
            self._halt.wait(self.period)

    def stop(self):
        self._halt.set()
        self.join(timeout=2)

    def snapshot(self):
        with self._lock:
            return list(self.reports)

    def count(self):
        with self._lock:
            return len(self.reports)


def vmm_args(vmm, mem_mib, smp, append):
    """The command line that runs the built-in guest under amber (any amber
    variant) or QEMU, without its serial and monitor."""
    if vmm.startswith("amber"):
        return [vmmod.AMBER, "-m", str(mem_mib), "-smp", str(smp), "-append", append]
    return [QEMU, "-accel", "kvm", "-m", str(mem_mib), "-smp", str(smp),
            "-kernel", vmmod.GUEST_ELF,
            "-append", "%s cpus=%d tsc_khz=%d" % (append, smp, tsc_khz()),
            "-display", "none", "-nodefaults",
            # Thread names (CPU 0/KVM, live_migration) for host tools and
            # schedtrace.py; nothing else changes.
            "-name", "guest,debug-threads=on",
            "-device", "isa-debug-exit,iobase=0x501,iosize=4"]


class Guest:
    """One VMM process running the built-in guest, driven over QMP."""

    def __init__(self, vmm, mem_mib, smp, append, tmp, tag, extra=(), env=None):
        self.vmm, self.mem_mib, self.smp = vmm, mem_mib, smp
        self.serial = os.path.join(tmp, "%s-%s-serial.log" % (vmm, tag))
        self.sock = os.path.join(tmp, "%s-%s-qmp.sock" % (vmm, tag))
        self.errlog = os.path.join(tmp, "%s-%s-stderr.log" % (vmm, tag))
        for p in (self.serial, self.sock):
            if os.path.exists(p):
                os.unlink(p)
        args = vmm_args(vmm, mem_mib, smp, append)
        args += ["-serial", "file:" + self.serial,
                 "-qmp", "unix:%s,server=on,wait=off" % self.sock] + list(extra)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._err = open(self.errlog, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._err,
                                     stderr=subprocess.STDOUT, env=full_env)
        self.tail = SerialTail(self.serial)
        self.tail.start()
        try:
            self.qmp = Qmp.connect(self.sock, timeout=120)
            self.qmp.negotiate()
        except Exception:
            self.kill()
            raise RuntimeError("%s did not start: %s" % (vmm, self.stderr()))

    def stderr(self):
        try:
            return open(self.errlog, errors="replace").read()[-800:]
        except OSError:
            return ""

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s: %s\nserial: %s" % (
                self.vmm, self.proc.returncode, self.stderr(),
                "\n".join(self.tail.lines[-5:])))

    def wait_reports(self, rounds, timeout=120):
        """Wait until every vCPU has sent `rounds` reports in all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {}
            for _, r in self.tail.snapshot():
                seen[r["vcpu"]] = seen.get(r["vcpu"], 0) + 1
            if len(seen) == self.smp and min(seen.values()) >= rounds:
                return
            self.check_alive()
            time.sleep(0.02)
        raise RuntimeError("%s: the guest did not report %d times within %ss; serial: %s"
                           % (self.vmm, rounds, timeout, "\n".join(self.tail.lines[-5:])))

    def wait_steady(self, rate, timeout=90, window=1.0):
        """Wait until the guest writes at its rate: every vCPU's median over the
        last `window` s is within 10 % of `rate` (capped loads) or, uncapped,
        within 25 % of the window before and past the first-touch crawl (the
        host backs fresh memory slowly: seconds per GiB).  Returns the time
        waited; gives up (returns None) after `timeout` s."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            now = time.monotonic()
            ok = 0
            for v, ivs in per_vcpu(self.tail.snapshot()).items():
                last = [r["writes"] for s, e, r in ivs if e > now - window]
                prev = [r["writes"] for s, e, r in ivs if now - 2 * window < e <= now - window]
                if not last or not prev:
                    continue
                m, p = median(last), median(prev)
                if rate and m >= 0.9 * rate:
                    ok += 1
                elif not rate and m > 100000 and abs(m - p) <= 0.25 * p:
                    ok += 1
            if ok == self.smp:
                return time.monotonic() - t0
            self.check_alive()
            time.sleep(0.1)
        return None

    def rss_bytes(self):
        """Resident memory of the whole VMM process."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def ram_rss_bytes(self):
        """Resident bytes of guest RAM (its mapping in /proc/PID/smaps)."""
        return vmmod.ram_mapping_kib(self.proc.pid, "Rss", self.mem_mib << 20) * 1024

    def pass_fd(self, name, fd):
        r = self.qmp.cmd("getfd", {"fdname": name}, fds=[fd])
        if "error" in r:
            raise RuntimeError("%s: getfd: %s" % (self.vmm, r["error"].get("desc")))

    def migrate_caps(self, caps):
        """Set capabilities; returns an error message or None."""
        r = self.qmp.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": k, "state": v} for k, v in caps.items()]})
        return r["error"].get("desc") if "error" in r else None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.tail.stop()
        self._err.close()


def per_vcpu(reports):
    """{vcpu: [(start, end, report)]}: each report covers the time since the
    vCPU's previous one arrived (the first one, whose start is unknown, is dropped)."""
    out, last = {}, {}
    for t, r in reports:
        v = r["vcpu"]
        if v in last:
            out.setdefault(v, []).append((last[v], t, r))
        last[v] = t
    return out


def median(values):
    return statistics.median(values) if values else None


def load_note(before):
    """A line for the doc: how busy the host was (the figures move with it)."""
    return ("\n\nHost load average (1 min): %.1f at the start, %.1f at the end, on %d CPUs."
            % (before, os.getloadavg()[0], os.cpu_count()))


def publish(opts, name, rows, text, command, write_doc=None):
    """Print a scenario's table, keep its raw rows in BUILD/bench/NAME.json
    and, when asked, put the table in docs/performance.md."""
    print(text)
    out = os.path.join(opts.build, "bench")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "%s.json" % name), "w") as f:
        json.dump(rows, f, indent=1)
    if write_doc:
        write_doc(name, text, command)
    return rows


def run_scenario(opts, tmp, mod, write_doc=None):
    """A scenario module as run.py calls it: mod.bench(), then its table with the
    host's load around it, printed, kept as raw JSON and, when asked, put in the doc."""
    before = os.getloadavg()[0]
    rows = mod.bench(opts, tmp)
    return publish(opts, mod.NAME, rows, mod.table(rows, opts) + load_note(before),
                   mod.command(opts), write_doc)
