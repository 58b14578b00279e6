"""Launch amber (or QEMU) for functional tests and watch what the guest says.

Every VM gets its own temporary directory for the serial log, sockets and
dumps.  Serial output goes to a file so tests can read it at any time.
"""
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("AMBER_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))
AMBER = os.path.abspath(os.path.join(BUILD, "amber"))
GUEST_ELF = os.path.abspath(os.path.join(BUILD, "guest", "amber-guest.elf"))

# What a sanitizer build of amber prints when it finds something.  make check
# runs part of this suite against the ASan+UBSan and TSan builds, and every
# Vm's output is checked for these when it is killed.
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "ThreadSanitizer", "runtime error:")

REPORT_RE = re.compile(
    r"^vcpu=(\d+) pass=(\d+) pos=(\d+) writes/s=(\d+) maxstall_us=(\d+) p99_us=(\d+)$")


def no_sanitizer_report(text):
    for mark in SANITIZER_MARKS:
        assert mark not in text, "sanitizer report:\n%s" % text[-4000:]


def guest_ram_sized(nbytes, mem_bytes):
    """Whether a mapping of nbytes can hold a guest's RAM of mem_bytes: about
    that size (nothing else a VMM maps is; a sanitizer build's shadow
    mappings are far bigger than any guest)."""
    return mem_bytes <= nbytes <= mem_bytes + (64 << 20)


def ram_mapping_kib(pid, field, mem_bytes=None):
    """A /proc/PID/smaps field (kB), e.g. "Rss" or "AnonHugePages", of a VMM's
    guest RAM mapping: the process's largest mapping or, given the RAM size,
    the largest of those guest_ram_sized()."""
    best = (0, 0)
    size = 0
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith(field + ":") and (
                    mem_bytes is None or guest_ram_sized(size << 10, mem_bytes)):
                best = max(best, (size, int(line.split()[1])))
    return best[1]


def parse_reports(text):
    """All guest report lines, as dicts of ints, in order."""
    out = []
    for line in text.splitlines():
        m = REPORT_RE.match(line.strip())
        if m:
            k = ("vcpu", "pass", "pos", "writes", "maxstall_us", "p99_us")
            out.append(dict(zip(k, map(int, m.groups()))))
    return out


KVM_ERROR = "cannot open /dev/kvm"


def run(args, timeout=30, **kw):
    """Run amber to completion; returns CompletedProcess with text output.  On a
    host without /dev/kvm, a run that got as far as needing it skips the test."""
    r = subprocess.run([AMBER] + list(args), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if r.returncode and KVM_ERROR in r.stderr and not os.path.exists("/dev/kvm"):
        pytest.skip("this host has no /dev/kvm: amber cannot run a guest")
    return r


class Vm:
    """A running amber process.  Use as a context manager."""

    def __init__(self, args=(), binary=None, serial=True, tmpdir=None):
        self.tmp = tmpdir or tempfile.mkdtemp(prefix="amber-test-")
        self.serial_path = os.path.join(self.tmp, "serial.log")
        self.binary = binary or AMBER
        self.args = list(args)
        if serial:
            self.args += ["-serial", "file:" + self.serial_path]
        self.proc = None

    def path(self, name):
        return os.path.join(self.tmp, name)

    def start(self):
        self.stderr_path = self.path("stderr.log")
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen([self.binary] + self.args,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._stderr, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()

    def serial(self):
        try:
            with open(self.serial_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def output(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def reports(self):
        return parse_reports(self.serial())

    def wait_serial(self, pattern, timeout=30, count=1):
        """Wait until `pattern` (regex) has matched `count` times in the log."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = rx.findall(self.serial())
            if len(found) >= count:
                return found
            if self.proc and self.proc.poll() is not None:
                raise AssertionError("amber exited (%s) before %r; output:\n%s\nserial:\n%s"
                                     % (self.proc.returncode, pattern, self.output(),
                                        self.serial()[-2000:]))
            time.sleep(0.05)
        raise AssertionError("timeout waiting for %r; serial:\n%s"
                             % (pattern, self.serial()[-2000:]))

    def wait_reports(self, ncpus, rounds=1, timeout=30):
        """Wait until every vCPU has reported `rounds` more times; returns them."""
        start = len(self.reports())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = self.reports()[start:]
            seen = {}
            for r in new:
                seen[r["vcpu"]] = seen.get(r["vcpu"], 0) + 1
            if len(seen) == ncpus and min(seen.values()) >= rounds:
                return new
            if self.proc.poll() is not None:
                raise AssertionError("amber exited (%s); output:\n%s"
                                     % (self.proc.returncode, self.output()))
            time.sleep(0.05)
        raise AssertionError("timeout waiting for reports; serial:\n%s"
                             % self.serial()[-2000:])

    def wait(self, timeout=30):
        return self.proc.wait(timeout=timeout)

    def kill(self):
        """Stop the process; fail if a sanitizer build reported anything, even
        after the test's last look at its output."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        if getattr(self, "_stderr", None):
            self._stderr.close()
            self._stderr = None
            no_sanitizer_report(self.output())
