#!/usr/bin/env python3
"""Background snapshot demo: snapshot a loaded guest, restore it elsewhere.

    scripts/demo-bgsnapshot.py BUILD_DIR [--mem 1G] [--cpus 2] [--rate 50000]

Boots the built-in guest (random writes at a fixed rate, a report every
100 ms), takes a background snapshot to a file while it runs, restores the
file in a second amber process and shows the guest continuing there.
Prints what a user would want to know: the pause, the vCPU stalls (from
amber's query-migrate and from the guest's own reports), the write rate the
guest kept during the snapshot, the snapshot time and the image size
against the RAM the guest had populated.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
from qmp import Qmp  # noqa: E402
from vm import parse_reports  # noqa: E402


def start(amber, work, name, args):
    serial = os.path.join(work, name + ".serial")
    sock = os.path.join(work, name + ".qmp")
    log = open(os.path.join(work, name + ".log"), "w")
    proc = subprocess.Popen([amber] + args + ["-serial", "file:" + serial,
                                              "-qmp", "unix:%s,server=on,wait=off" % sock],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    c = Qmp.connect(sock, timeout=30)
    c.negotiate()
    return proc, c, serial


def serial_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def wait_reports(path, ncpus, rounds, proc, timeout=60):
    """Wait until each vCPU has `rounds` reports; returns all reports."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reps = parse_reports(serial_text(path))
        if all(sum(1 for r in reps if r["vcpu"] == v) >= rounds for v in range(ncpus)):
            return reps
        if proc.poll() is not None:
            sys.exit("demo: amber exited (%d); serial:\n%s" % (proc.returncode,
                                                             serial_text(path)[-2000:]))
        time.sleep(0.05)
    sys.exit("demo: no guest reports after %ds" % timeout)


def wait_steady(path, ncpus, rate, proc, timeout=90):
    """Wait until every vCPU's last 5 reports reach 90 % of the rate cap:
    on this host a first write to a page costs far more than later ones,
    so a fresh guest writes slowly until it has touched its memory."""
    deadline = time.monotonic() + timeout
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        reps = parse_reports(serial_text(path))
        last = [[r["writes"] for r in reps if r["vcpu"] == v][-5:] for v in range(ncpus)]
        if all(len(w) == 5 and min(w) >= 0.9 * rate for w in last):
            return time.monotonic() - t0
        if proc.poll() is not None:
            sys.exit("demo: amber exited (%d)" % proc.returncode)
        time.sleep(0.1)
    sys.exit("demo: the guest did not reach its write rate within %ds" % timeout)


def stop_all(procs, work):
    """Kill what still runs and remove the work directory."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


def mean(xs):
    return sum(xs) / len(xs) if xs else 0.0


def snapshot(c, serial, img):
    """migrate with background-snapshot; returns (query-migrate, reports
    before, reports made during the snapshot)."""
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "background-snapshot", "state": True}]})
    before_text = serial_text(serial)
    c.ok("migrate", {"uri": "file:" + img})
    states = set()
    while True:
        info = c.ok("query-migrate")
        states.add(c.ok("query-status")["status"])
        if info["status"] not in ("setup", "active"):
            break
        time.sleep(0.02)
    after_text = serial_text(serial)
    if info["status"] != "completed":
        sys.exit("demo: snapshot %s: %s" % (info["status"], info.get("error-desc", "")))
    before = parse_reports(before_text)
    # Lines appended while the snapshot ran (a report made in the pause's
    # 100 ms window counts the pause itself, as a user's app would see it).
    during = parse_reports(after_text[len(before_text):])
    return info, before, during, states


LEGEND = """
  What the figures are:
  - pause: the one moment every vCPU stops (devices saved, RAM write-protected); the rest of
    the snapshot runs while the guest does.  A QEMU 7.2 background snapshot of the same
    guest takes several times as long on this kind of host (docs/performance.md has both
    side by side).
  - vCPU stalls (amber): from a vCPU's write fault on a protected page until the page is
    copied and writable again.  p50/p99 are the upper bounds of power-of-two buckets
    (4096 us means between 2048 and 4096); max is exact.
  - guest-measured stalls: the guest's own clock between batches of writes, so they add the
    host's scheduling and any other wait to amber's figure: larger, and what an application
    in the guest would notice.
  - throughput retained: writes/s while the snapshot ran against the rate the guest had
    reached before it (its last ten reports a vCPU, after the warm-up of first touches).
  - pass N pos I: a vCPU's place in its walk over its share of RAM (its N-th pass, page I);
    the restored guest starts exactly where the pause caught it, while the source moved on.
  - image: only populated pages are saved; never-populated ones restore as zero."""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--mem", default="1G")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--rate", type=int, default=50000)
    a = ap.parse_args()
    amber = os.path.join(a.build, "amber")
    if not os.access(amber, os.X_OK):
        sys.exit("demo: %s is not built (run make)" % amber)
    work = tempfile.mkdtemp(prefix="amber-bgs-demo.")
    procs = []
    try:
        guest = ["-m", a.mem, "-smp", str(a.cpus), "-append",
                 "workload=random rate=%d report=100" % a.rate]
        print("background snapshot: %d vCPUs, %s RAM, random writes at %d pages/s per vCPU"
              % (a.cpus, a.mem, a.rate))
        src, c, serial = start(amber, work, "source", guest)
        procs.append(src)
        wait_reports(serial, a.cpus, 1, src)
        warm = wait_steady(serial, a.cpus, a.rate, src)
        print("  guest at its write rate after %.1f s of first touches" % warm)
        img = os.path.join(work, "vm.snap")
        info, before, during, states = snapshot(c, serial, img)
        bgs = info["x-background-snapshot"]
        ram = info["ram"]

        base = [r["writes"] for r in before[-10 * a.cpus:]]
        kept = [r["writes"] for r in during]
        page = ram["page-size"]
        populated = (ram["normal"] + ram["duplicate"]) * page
        print("  source status during the snapshot: %s" % ", ".join(sorted(states)))
        print("  pause (downtime): %d ms (%.2f ms, of it %.2f ms write-protecting RAM)"
              % (info["downtime"], bgs["pause-us"] / 1000, bgs["write-protect-us"] / 1000))
        print("  snapshot time: %d ms" % info["total-time"])
        print("  write faults: %d, vCPU stalls p50/p99/max: %d / %d / %d us (amber)"
              % (bgs["write-faults"], bgs["stall-p50-us"], bgs["stall-p99-us"],
                 bgs["stall-max-us"]))
        if during:
            print("  guest-measured stalls during the snapshot: p99 up to %d us, max %d us "
                  "(%d reports)" % (max(r["p99_us"] for r in during),
                                    max(r["maxstall_us"] for r in during), len(during)))
        else:
            print("  guest-measured stalls: no report fell inside the snapshot")
        if base and kept:
            print("  throughput retained: %.0f writes/s during vs %.0f before (%.0f%%)"
                  % (mean(kept), mean(base), 100.0 * mean(kept) / mean(base)))
        print("  image: %.1f MiB for %.1f MiB of populated RAM: %.1f MiB of data pages, "
              "%.1f MiB of zero pages (a 9-byte record each); %.1f MiB never populated "
              "(not written)" % (os.path.getsize(img) / 2**20, populated / 2**20,
                                 ram["normal"] * page / 2**20, ram["duplicate"] * page / 2**20,
                                 bgs["pages-skipped"] * page / 2**20))
        at_end = {r["vcpu"]: r for r in parse_reports(serial_text(serial))}
        src.kill()
        src.wait()
        c.close()

        # The second process: the guest continues from the instant of the pause.
        dst, dc, dserial = start(amber, work, "restored", guest + ["-incoming", "file:" + img])
        procs.append(dst)
        reps = wait_reports(dserial, a.cpus, 6, dst)
        for v in range(a.cpus):
            mine = [r for r in reps if r["vcpu"] == v]
            # The first report's interval includes the restore itself.
            print("  restored vCPU %d: first report at pass %d pos %d (the source had gone on "
                  "to pass %d pos %d), then %.0f writes/s"
                  % (v, mine[0]["pass"], mine[0]["pos"], at_end[v]["pass"], at_end[v]["pos"],
                     mean([r["writes"] for r in mine[1:]])))
        print("  restored status: %s" % dc.ok("query-status")["status"])
        dc.close()
        print(LEGEND)
    finally:
        stop_all(procs, work)


if __name__ == "__main__":
    main()
