"""Write-fault floor: what serving write-protect faults alone costs the guest.

A background snapshot is started with `max-bandwidth` throttled to FLOOR_BANDWIDTH
and a copy pool as big as the guest's RAM.  The saver's scan then waits in the rate
limit after its first batch (the saver only writes out the fault copies) and no
fault ever waits for pool room, so for the window the guest runs under protection
with nothing but the faults between it and its memory: KVM traps the write, the
fault message reaches the fault thread, which copies the unit and lifts its
protection, and the vCPU is woken.  Then `migrate_cancel` lifts every protection
and the guest goes on.

The guest's stalls in that window are the least any background snapshot built
on write-protect faults can cost it on this host, whatever it does with the
stream: the figure to hold the bgsnap max-stall goal against.  For that goal,
each load also gets one QEMU 7.2 background snapshot in the same run.
"""
import json
import os
import sys
import time

import benchlib as bl
import bgsnap

NAME = "wpfloor"
LOADS = ("busy", "hammer-1g")
UNITS = (4 << 10, 64 << 10, 2 << 20)
# Low enough that the saver writes almost nothing in the window, and a whole
# window's worth is far below what the pool holds.
FLOOR_BANDWIDTH = 1 << 20


def floor_run(load, unit, tmp, opts, probe=None):
    """One guest under amber: a throttled snapshot for opts.wf_window seconds,
    then cancelled.  Returns the raw series, or {"error": ...}.  probe
    (schedtrace.py) runs from just before `migrate` to the end of the window."""
    spec = bgsnap.LOADS[load]
    g = bgsnap.load_guest(load, "amber", tmp, opts)
    img = os.path.join(tmp, "floor-%s.snap" % load)
    try:
        _, err = bgsnap.warm_up(g, load, opts)
        if err:
            return {"error": "background-snapshot refused: %s" % err}
        g.qmp.ok("migrate-set-parameters", {
            "max-bandwidth": FLOOR_BANDWIDTH,
            "x-background-snapshot-pool-size": spec["mem_mib"] << 20,
            "x-background-snapshot-chunk-size": unit})
        if probe:
            probe.start(g)
        t0 = time.monotonic()
        g.qmp.ok("migrate", {"uri": "file:" + img})
        time.sleep(opts.wf_window)
        info = g.qmp.ok("query-migrate")
        tc = time.monotonic()
        if probe:
            probe.stop(g)
        if info.get("status") != "active":
            return {"error": "snapshot %s before the window ended (%s)"
                    % (info.get("status"), info.get("error-desc"))}
        g.qmp.ok("migrate_cancel")
        while g.qmp.ok("query-migrate").get("status") in ("active", "cancelling"):
            if time.monotonic() - tc > opts.snap_timeout:
                return {"error": "no end within %ss of migrate_cancel" % opts.snap_timeout}
            time.sleep(0.02)
        status = g.qmp.ok("query-migrate").get("status")
        if status != "cancelled":
            return {"error": "snapshot ended %s after migrate_cancel" % status}
        tend = time.monotonic()
        time.sleep(opts.tail)
        reports = g.tail.snapshot()
        g.check_alive()
    finally:
        g.kill()
        if os.path.exists(img):
            os.unlink(img)
    return {"t0": t0, "tc": tc, "tend": tend, "reports": reports, "info": info}


def floor_figures(run, opts):
    """Per run: the guest's write rate and stalls inside the window."""
    reports, t0, tc = run["reports"], run["t0"], run["tc"]
    base = bgsnap.baseline(reports, t0, opts.baseline)
    inside, overlapping, back = [], [], {}
    for v, ivs in bl.per_vcpu(reports).items():
        for s, e, r in ivs:
            if s >= t0 and e <= tc:
                inside.append(r)
            # From the instant on, but not what the cancel does (huge-page repair).
            if e > t0 and e <= tc:
                overlapping.append(r)
            if s >= tc and v not in back and base.get(v) and \
                    r["writes"] >= bgsnap.RECOVERED * base[v]:
                back[v] = e - tc
    eng = run["info"].get("x-background-snapshot") or {}
    rate = bl.median([r["writes"] for r in inside])
    return {
        "baseline_writes_s": sorted(base.values()),
        "window_writes_s": rate,
        "us_per_write": 1e6 / rate if rate else None,
        "stall_p50_us": bl.median([r["p99_us"] for r in inside]),
        "stall_max_us": max((r["maxstall_us"] for r in overlapping), default=None),
        "faults": eng.get("write-faults"),
        "fault_stall_p50_us": eng.get("stall-p50-us"),
        "fault_stall_max_us": eng.get("stall-max-us"),
        "pool_high_water": eng.get("pool-high-water-bytes"),
        "pool_size": eng.get("pool-size"),
        "back_after_cancel_s": max(back.values()) if len(back) == len(base) and base else None,
        "window_s": tc - t0,
        "cancel_s": run["tend"] - tc,
    }


def bench(opts, tmp):
    rows = []
    for load in opts.wf_loads:
        row = {"scenario": NAME, "load": load, "units": {}, "rounds": opts.wf_rounds}
        for rnd in range(1, opts.wf_rounds + 1):
            for unit in UNITS:
                try:
                    run = floor_run(load, unit, tmp, opts)
                except RuntimeError as e:
                    run = {"error": str(e)}
                res = run if "error" in run else {"figures": floor_figures(run, opts)}
                row["units"].setdefault(str(unit), []).append(res)
                print(json.dumps({"load": load, "unit": unit, "round": rnd, **res}),
                      flush=True)
            if bl.QEMU:
                q = bgsnap.measure(load, "qemu", rnd, tmp, opts)
                row.setdefault("qemu", []).append(
                    {"error": q["error"]} if "error" in q else
                    {"stall_max_us": q["figures"]["stall_max_us"]})
        rows.append(row)
    return rows


def unit_name(unit):
    return "%d MiB" % (unit >> 20) if unit >= 1 << 20 else "%d KiB" % (unit >> 10)


def span(vals, spec):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    lo, hi = min(vals), max(vals)
    return spec % lo if lo == hi else (spec + "-" + spec) % (lo, hi)


def table(rows, opts):
    lines = [
        "| load | units | guest writes/s/vCPU in the window (baseline) | us per guest write "
        "| stall p50 / max in the window (us) | write faults | fault thread p50 / max (us) "
        "| pool high water (MiB) | back after cancel (s) "
        "| QEMU 7.2 max stall (us), goal (1/10) |",
        "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        qmax = [q["stall_max_us"] for q in row.get("qemu", []) if q.get("stall_max_us")]
        qcell = "%s, %s" % (span(qmax, "%d"), span([m / 10 for m in qmax], "%d")) \
            if qmax else "-"
        for unit in UNITS:
            res = row["units"].get(str(unit), [])
            figs = [r["figures"] for r in res if "figures" in r]
            errs = [r["error"] for r in res if "error" in r]
            if not figs:
                lines.append("| %s | %s | failed: %s | | | | | | | |" % (
                    row["load"], unit_name(unit), "; ".join(errs) or "not run"))
                continue
            base = [b for f in figs for b in f["baseline_writes_s"]]
            lines.append("| %s | %s | %s (%s) | %s | %s / %s | %s | %s / %s | %s | %s | %s |" % (
                row["load"], unit_name(unit),
                span([f["window_writes_s"] for f in figs], "%.0f"), span(base, "%.3g"),
                span([f["us_per_write"] for f in figs], "%.1f"),
                span([f["stall_p50_us"] for f in figs], "%d"),
                span([f["stall_max_us"] for f in figs], "%d"),
                span([f["faults"] for f in figs], "%d"),
                span([f["fault_stall_p50_us"] for f in figs], "%d"),
                span([f["fault_stall_max_us"] for f in figs], "%d"),
                span([f["pool_high_water"] / 2**20 if f["pool_high_water"] is not None
                      else None for f in figs], "%.0f"),
                span([f["back_after_cancel_s"] for f in figs], "%.2f"), qcell))
    lines.append("")
    lines.append(DEFINITIONS % {"window": "%g" % opts.wf_window,
                                "bw": FLOOR_BANDWIDTH >> 20})
    return "\n".join(lines) + "\n"


DEFINITIONS = """\
Guest and loads as in the bgsnap section (2 vCPUs, `report=100`). For each unit size,
amber takes a background snapshot (`migrate file:`) with `max-bandwidth` %(bw)s MiB/s and
`x-background-snapshot-pool-size` equal to the RAM, so that the scan waits in the rate
limit after its first batch (the saver only writes out the fault copies) and no fault
waits for pool room; %(window)s s later `migrate_cancel` ends it. In that window nothing
but write-protect faults stands between the guest and its memory.
- **writes/s in the window**: median over the report intervals that lie wholly inside it
  (all vCPUs); **us per guest write** is its inverse. While most writes fault, this is
  the round trip of one fault as the guest sees it.
- **stall p50 / max**: median of those intervals' `p99_us`, and the largest `maxstall_us`
  of any interval that ends in the window, so from the instant on, leaving out what
  the cancel costs (a stall sample is one batch of writes).
- **write faults**, **fault thread p50 / max**, **pool high water**: amber's counters at
  the end of the window (the fault thread's part of each fault, from reading the message
  to the wake; the most copies the pool held at once).
  Each copy here lands in pool memory never touched before, which makes a 2 MiB fault
  slower than with the default pool (1/64 of the RAM), whose memory is reused.
- **back after cancel**: until every vCPU has an interval back within 10 %% of its
  baseline after `migrate_cancel`.
- **QEMU 7.2 max stall**: the guest's largest stall during a complete QEMU background
  snapshot of the same load, one per round, in the same run (measured as in the bgsnap
  section), and a tenth of it: the bgsnap goal. Ranges span the rounds.
"""


def command(opts):
    return "tests/bench/run.py --only wpfloor" + (
        " --wf-rounds %d" % opts.wf_rounds if opts.wf_rounds != 1 else "") + "".join(
        " --wf-load %s" % l for l in opts.wf_loads if opts.wf_loads != list(LOADS))


def add_args(ap):
    ap.add_argument("--wf-load", dest="wf_loads", action="append", choices=LOADS,
                    help="wpfloor loads (default: all)")
    ap.add_argument("--wf-window", dest="wf_window", type=float, default=1.0,
                    help="seconds the throttled snapshot runs before migrate_cancel")
    ap.add_argument("--wf-rounds", dest="wf_rounds", type=int, default=1)


def run(opts, tmp, write_doc=None):
    opts.wf_loads = opts.wf_loads or list(LOADS)
    if opts.wf_rounds < 1:
        raise SystemExit("--wf-rounds must be at least 1")
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
