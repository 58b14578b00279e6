#!/usr/bin/env python3
"""Postcopy demo: move a guest that writes faster than the link, with postcopy.

    scripts/demo-postcopy.py BUILD_DIR [--mem 512M] [--cpus 2] [--bandwidth 64M]

Boots the built-in guest writing random pages as fast as it can, starts a
live migration to a second amber process over a unix socket (held to
--bandwidth, so precopy alone never converges), switches to postcopy after
one second, and shows the guest running on the destination while its
pages follow.  Prints what a user would want to know: when the guest
started on the destination, the downtime, how long the pages took to
follow, how many the guest asked for and how long it waited for them, and
its write rate on the destination against the source's.
"""
import argparse
import os
import sys
import tempfile
import time

from importlib import import_module

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
demo = import_module("demo-bgsnapshot")
parse_reports = demo.parse_reports


def size_bytes(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def percentile(dist, q):
    """Upper bound (us) of the log2 bucket holding the q-th quantile."""
    total = sum(dist)
    seen = 0
    for i, n in enumerate(dist):
        seen += n
        if total and seen >= q * total:
            return 2 ** (i + 1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--mem", default="512M")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--bandwidth", default="64M")
    a = ap.parse_args()
    amber = os.path.join(a.build, "amber")
    if not os.access(amber, os.X_OK):
        sys.exit("demo: %s is not built (run make)" % amber)
    work = tempfile.mkdtemp(prefix="amber-pc-demo.")
    sock = os.path.join(work, "mig.sock")
    procs = []
    caps = [{"capability": c, "state": True}
            for c in ("events", "postcopy-ram", "postcopy-preempt")]
    try:
        guest = ["-m", a.mem, "-smp", str(a.cpus), "-append",
                 "workload=random report=100"]
        print("postcopy: %d vCPUs, %s RAM, random writes as fast as the guest goes, "
              "precopy held to %s/s" % (a.cpus, a.mem, a.bandwidth))
        src, sc, sserial = demo.start(amber, work, "source", guest)
        procs.append(src)
        dst, dc, dserial = demo.start(amber, work, "destination",
                                      guest + ["-incoming", "unix:" + sock])
        procs.append(dst)
        demo.wait_reports(sserial, a.cpus, 10, src)
        for c in (sc, dc):
            c.ok("migrate-set-capabilities", {"capabilities": caps})
        dc.ok("migrate-set-capabilities",
              {"capabilities": [{"capability": "postcopy-blocktime", "state": True}]})
        sc.ok("migrate-set-parameters", {"max-bandwidth": size_bytes(a.bandwidth),
                                         "downtime-limit": 0})
        base = [r["writes"] for r in parse_reports(demo.serial_text(sserial))[-5 * a.cpus:]]
        t0 = time.monotonic()
        sc.ok("migrate", {"uri": "unix:" + sock})
        time.sleep(1.0)
        sc.ok("migrate-start-postcopy")
        switch = None
        while True:
            info = sc.ok("query-migrate")
            if switch is None and info["status"] == "postcopy-active":
                switch = time.monotonic()
            if info["status"] not in ("setup", "active", "postcopy-active"):
                break
            time.sleep(0.01)
        end = time.monotonic()
        if info["status"] != "completed":
            sys.exit("demo: migration %s: %s" % (info["status"], info.get("error-desc", "")))
        switch = switch or end
        ram = info["ram"]
        print("  switch to postcopy %.2f s after migrate (migrate-start-postcopy 1 s after it)"
              % (switch - t0))
        print("  downtime: %d ms; pages followed for %.2f s; %d pages asked for by the guest"
              % (info["downtime"], end - switch, ram["postcopy-requests"]))
        print("  bytes sent: %.1f MiB for %.1f MiB of RAM (%.1f MiB after the switch)"
              % (ram["transferred"] / 2**20, ram["total"] / 2**20,
                 ram["postcopy-bytes"] / 2**20))
        deadline = time.monotonic() + 30
        while dc.ok("query-migrate").get("status") != "completed":
            if time.monotonic() > deadline:
                sys.exit("demo: the destination did not complete")
            time.sleep(0.05)
        dinfo = dc.ok("query-migrate")
        dist = dinfo.get("postcopy-latency-dist", [])
        print("  destination: page wait p50 <= %d us, p99 <= %d us, mean %.0f us; "
              "vCPUs blocked %s ms" % (percentile(dist, 0.5), percentile(dist, 0.99),
                                       dinfo.get("postcopy-latency", 0) / 1000,
                                       dinfo.get("postcopy-vcpu-blocktime")))
        # On this host a fresh process's first touch of each page is slow
        # (shadow paging): the rate climbs back over the next seconds.
        reps = demo.wait_reports(dserial, a.cpus, 30, dst)
        first = [r["writes"] for r in reps[:2 * a.cpus]]
        after = [r["writes"] for r in reps[-3 * a.cpus:]]
        print("  guest on the destination: %s; writes/s per vCPU %.0f in its first reports, "
              "%.0f three seconds on, %.0f on the source before the move"
              % (dc.ok("query-status")["status"], demo.mean(first), demo.mean(after),
                 demo.mean(base)))
        print("  source status: %s" % sc.ok("query-status")["status"])
        sc.close()
        dc.close()
    finally:
        demo.stop_all(procs, work)


if __name__ == "__main__":
    main()
