"""Precopy live migration benchmark: total time, downtime and bytes sent
against the guest's dirty rate.

For each rate, a source and a destination of the same VMM (amber to amber,
QEMU 7.2 to QEMU 7.2) run on this host; the source guest writes random pages
of its partition at `rate=` pages/s per vCPU and migrates over a unix socket
(loopback) with the same downtime-limit and max-bandwidth on both VMMs.  A
migration still running after --pc-timeout seconds is cancelled and reported
as not converged, with what it had sent.  The destination must then run the
guest on: its own report lines must appear.
"""
import json
import os
import sys
import time

import benchlib as bl

RATES = (1000, 10000, 100000)
VMMS = ("amber", "qemu")
MEM_MIB = 512
SMP = 2


def migrate_run(vmm, rate, tmp, opts):
    """One migration of a guest writing `rate` pages/s per vCPU."""
    append = "workload=random rate=%d report=100" % rate
    tag = "pc%d" % rate
    uri = "unix:" + os.path.join(tmp, "%s-%s-mig.sock" % (vmm, tag))
    dst = bl.Guest(vmm, MEM_MIB, SMP, append, tmp, tag + "-dst", extra=["-incoming", uri])
    src = None
    try:
        src = bl.Guest(vmm, MEM_MIB, SMP, append, tmp, tag + "-src")
        src.wait_reports(rounds=2)
        warm = src.wait_steady(rate, timeout=opts.pc_warmup)
        time.sleep(1.0)
        src.qmp.ok("migrate-set-parameters", {"downtime-limit": opts.pc_downtime_ms,
                                              "max-bandwidth": opts.pc_bandwidth})
        rates = [r["writes"] for _, r in src.tail.snapshot()[-2 * SMP:]]
        t0 = time.monotonic()
        src.qmp.ok("migrate", {"uri": uri})
        converged = True
        while True:
            info = src.qmp.ok("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > opts.pc_timeout:
                converged = False
                src.qmp.cmd("migrate_cancel")
                info = src.qmp.ok("query-migrate")
                break
            time.sleep(0.05)
        wall = time.monotonic() - t0
        continued = None
        if info.get("status") == "completed":
            # The destination runs the guest on: new report lines appear there.
            deadline = time.monotonic() + 10
            continued = False
            while time.monotonic() < deadline and not continued:
                continued = dst.tail.count() > 0
                time.sleep(0.05)
        elif converged and info.get("status") != "completed":
            return {"error": "migration %s: %s" % (info.get("status"), info.get("error-desc"))}
    finally:
        if src:
            src.kill()
        dst.kill()
    ram = info.get("ram") or {}
    return {"converged": converged, "status": info.get("status"), "wall_s": round(wall, 3),
            "warmup_s": warm, "writes_s_per_vcpu": rates,
            "total_time_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
            "setup_time_ms": info.get("setup-time"),
            "transferred_bytes": ram.get("transferred"), "normal_bytes": ram.get("normal-bytes"),
            "dirty_sync_count": ram.get("dirty-sync-count"), "mbps": ram.get("mbps"),
            "dst_continued": continued, "info": info}


def bench(opts, tmp):
    rows = []
    for rate in opts.pc_rates or RATES:
        row = {"scenario": "precopy", "rate": rate, "mem_mib": MEM_MIB, "smp": SMP,
               "downtime_limit_ms": opts.pc_downtime_ms, "max_bandwidth": opts.pc_bandwidth}
        for vmm in opts.pc_vmms or VMMS:
            if vmm == "qemu" and not bl.QEMU:
                row[vmm] = {"error": "qemu-system-x86_64 not installed"}
                continue
            try:
                row[vmm] = migrate_run(vmm, rate, tmp, opts)
            except (RuntimeError, AssertionError, OSError) as e:
                row[vmm] = {"error": str(e)[:400]}
            print(json.dumps({"rate": rate, "vmm": vmm,
                              **{k: v for k, v in row[vmm].items() if k != "info"}}),
                  flush=True)
        rows.append(row)
    return rows


def table(rows, opts):
    lines = ["| dirty rate (pages/s/vCPU) | VMM | result | total (s) | downtime (ms) "
             "| passes | sent MiB | sent / RAM | throughput MiB/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for vmm in opts.pc_vmms or VMMS:
            r = row.get(vmm)
            if r is None:
                continue
            label = bl.VMM_LABEL[vmm]
            if "error" in r:
                lines.append("| %d | %s | failed: %s |  |  |  |  |  |  |" % (
                    row["rate"], label, r["error"].replace("|", "/").replace("\n", " ")[:160]))
                continue
            if r["status"] == "completed":
                result = "completed" + ("" if r["dst_continued"] else
                                        ", **guest did not run on at the destination**")
            else:
                result = "not converged in %gs (%s)" % (opts.pc_timeout, r["status"])
            sent = r["transferred_bytes"]
            total = r["total_time_ms"] if r["status"] == "completed" else r["wall_s"] * 1000
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["rate"], label, result, "%.2f" % (total / 1000.0) if total else "-",
                r["downtime_ms"] if r["downtime_ms"] is not None else "-",
                r["dirty_sync_count"] if r["dirty_sync_count"] is not None else "-",
                "%.0f" % (sent / 2**20) if sent else "-",
                "%.2f" % (sent / (MEM_MIB << 20)) if sent else "-",
                "%.0f" % (sent / 2**20 / (total / 1000.0)) if sent and total else "-"))
    lines += ["", (
        "Guest: the built-in guest, %d MiB, %d vCPUs, `workload=random rate=N` (N page writes "
        "per second per vCPU, random pages of its half of RAM). Source and destination are "
        "the same VMM on this host, `migrate unix:SOCKET` to a destination started with "
        "`-incoming unix:SOCKET`, after the write rate is steady; both with `downtime-limit` "
        "%d ms and `max-bandwidth` %d MiB/s. total = `total-time`, downtime = `downtime`, "
        "passes = `dirty-sync-count`, sent = `ram.transferred` (the whole stream), all from "
        "the source's `query-migrate`. A migration still active after %g s is cancelled "
        "(not converged; its figures are then at the cancel). Completed means the "
        "destination also ran the guest on (its report lines appeared)." % (
            MEM_MIB, SMP, opts.pc_downtime_ms, opts.pc_bandwidth >> 20, opts.pc_timeout))]
    return "\n".join(lines)


def add_args(ap):
    ap.add_argument("--pc-rate", dest="pc_rates", type=int, action="append",
                    help="precopy dirty rates, pages/s per vCPU (default 1000 10000 100000)")
    ap.add_argument("--pc-vmm", dest="pc_vmms", action="append", choices=VMMS)
    ap.add_argument("--pc-downtime-ms", type=int, default=300)
    ap.add_argument("--pc-bandwidth", type=int, default=1 << 30,
                    help="max-bandwidth, bytes/s (default 1 GiB/s)")
    ap.add_argument("--pc-timeout", type=float, default=30)
    ap.add_argument("--pc-warmup", type=float, default=30)


def command(opts):
    cmd = "tests/bench/run.py --only precopy"
    if opts.pc_rates:
        cmd += "".join(" --pc-rate %d" % r for r in opts.pc_rates)
    if opts.pc_downtime_ms != 300:
        cmd += " --pc-downtime-ms %d" % opts.pc_downtime_ms
    if opts.pc_bandwidth != 1 << 30:
        cmd += " --pc-bandwidth %d" % opts.pc_bandwidth
    return cmd


NAME = "precopy"


def run(opts, tmp, write_doc=None):
    """The scenario as run.py calls it: bench, print, raw JSON, doc."""
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
