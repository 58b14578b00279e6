"""Postcopy live migration benchmark: what the switch to postcopy costs a busy
guest, amber against QEMU 7.2.

For each load, RAM size, vCPU count, host state and postcopy-preempt setting,
a source and a destination of the same VMM (amber to amber, QEMU 7.2 to QEMU
7.2) run the built-in guest on this host and migrate over a unix socket with
the same capabilities and parameters.  `migrate-start-postcopy` goes exactly
--pcp-switch-after seconds after `migrate`; the guest then runs on the
destination while its pages follow.  Both guests' report lines, laid on one
clock, give the guest's writes around the switch; the MIGRATION events give
the moments, and the two sides' `query-migrate` the rest.
"""
import json
import mmap
import os
import re
import sys
import time

import benchlib as bl
import bgsnap

NAME = "postcopy"
LOADS = {
    "hammer": {"append": "workload=random", "rate": 0, "mem_mib": (1024, 4096),
               "what": "uncapped `workload=random` over all of RAM"},
    "busy": {"append": "workload=random rate=50000", "rate": 50000, "mem_mib": (1024,),
             "what": "`workload=random rate=50000` (page writes/s per vCPU) over all of RAM"},
}
VMMS = ("amber", "qemu")
STATES = ("cold", "warm")
ENDED = ("completed", "failed", "cancelled", "postcopy-paused")
# Small against the GiBs it samples, long enough to time.
PROBE_BYTES = 64 << 20
BANNER_RE = re.compile(r"\((\d+) pages per vcpu\)")
# A destination not back to its baseline: its steady rate over the window's last seconds.
STEADY_S = 2.0
# Recorded past the recovery, so that the report after it has arrived.
TAIL_S = 1.0

# (flag, dest, default, argparse keywords): add_args() and command() both read it,
# so the command written into the doc is the one that ran.
OPTIONS = (
    ("--pcp-load", "pcp_loads", None,
     {"action": "append", "choices": sorted(LOADS), "help": "postcopy loads (default: all)"}),
    ("--pcp-mem-mib", "pcp_mem_mib", None,
     {"action": "append", "type": int,
      "help": "postcopy RAM sizes for every load (default: hammer 1024 and 4096, busy 1024)"}),
    ("--pcp-smp", "pcp_smp", None,
     {"action": "append", "type": int, "help": "postcopy vCPU counts (default 1)"}),
    ("--pcp-state", "pcp_states", None,
     {"action": "append", "choices": STATES, "help": "host states (default: both)"}),
    # defer: the capabilities go in before the destination listens, which both VMMs
    # take; a destination already listening may refuse them.
    ("--pcp-incoming", "pcp_incoming", "defer",
     {"choices": ("defer", "uri"),
      "help": "destination: -incoming defer, capabilities, then migrate-incoming URI "
              "(default), or -incoming URI and then the capabilities"}),
    ("--pcp-preempt", "pcp_preempt", "both",
     {"choices": ("both", "off", "on"),
      "help": "postcopy-preempt off, on (where a VMM lists it) or both (default)"}),
    ("--pcp-vmm", "pcp_vmms", None, {"action": "append", "choices": VMMS}),
    ("--pcp-rounds", "pcp_rounds", 1, {"type": int, "help": "runs per configuration and VMM"}),
    ("--pcp-switch-after", "pcp_switch_after", 1.0, {"type": float, "help": "s to the switch"}),
    ("--pcp-bandwidth", "pcp_bandwidth", 1 << 30, {"type": int, "help": "bytes/s"}),
    ("--pcp-postcopy-bandwidth", "pcp_postcopy_bandwidth", 0, {"type": int, "help": "bytes/s"}),
    ("--pcp-downtime-ms", "pcp_downtime_ms", 10, {"type": int}),
    ("--pcp-report-ms", "pcp_report_ms", 100, {"type": int}),
    ("--pcp-warmup", "pcp_warmup", 60.0, {"type": float, "help": "most s to a steady rate"}),
    ("--pcp-baseline", "pcp_baseline", 3.0, {"type": float}),
    ("--pcp-cold-idle", "pcp_cold_idle", 10.0, {"type": float, "help": "cold: idle seconds"}),
    ("--pcp-timeout", "pcp_timeout", 120.0, {"type": float}),
    ("--pcp-recovery-timeout", "pcp_recovery_timeout", 10.0, {"type": float, "help": "window, s"}),
)


# ---- the host state ----

def touch(nbytes):
    """Fault in nbytes of fresh anonymous memory, then free it; returns the
    CPU seconds the faults took: what the host charges now to back memory,
    without the time the busy guest's vCPUs held the CPU."""
    t = time.thread_time()
    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | mmap.MAP_POPULATE)
    took = time.thread_time() - t
    m.close()
    return took


def settle_host(state, mem_mib):
    """Just before `migrate`: warm = the memory the destination is about to
    fill is faulted in and freed now, so the host backs it; cold = left as
    the idle before made it.  Returns the cost of touching fresh memory at
    that moment, CPU s/GiB (a PROBE_BYTES sample)."""
    if state == "warm":
        want = (mem_mib << 20) * 5 // 4
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        touch(max(PROBE_BYTES, min(want, free - (1 << 30))))
    return touch(PROBE_BYTES) * (1 << 30) / PROBE_BYTES


# ---- one migration ----

def cap_names(g):
    return {c["capability"] for c in g.qmp.ok("query-migrate-capabilities")}


def migration_events(g, clock, want, timeout=2.0):
    """[(status, monotonic time)] of the MIGRATION events g sent, once `want`
    is among them or timeout s passed (events are read along with replies)."""
    deadline = time.monotonic() + timeout
    while True:
        g.qmp.cmd("query-status")
        evs = [(e["data"]["status"],
                e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6 - clock)
               for e in g.qmp.events if e.get("event") == "MIGRATION"]
        if any(s == want for s, _ in evs) or time.monotonic() > deadline:
            return evs
        time.sleep(0.05)


def first(events, status):
    return next((t for s, t in events if s == status), None)


def wait_status(g, timeout):
    """Poll query-migrate until it ends; returns (info, {status: first seen})."""
    t0, seen = time.monotonic(), {}
    while True:
        info = g.qmp.ok("query-migrate")
        seen.setdefault(info.get("status"), time.monotonic())
        if info.get("status") in ENDED or time.monotonic() - t0 > timeout:
            return info, seen
        g.check_alive()
        time.sleep(0.02)


def merged(src, dst):
    return sorted(src.tail.snapshot() + dst.tail.snapshot(), key=lambda tr: tr[0])


def migrate_run(vmm, cfg, tmp, opts):
    """One migration switched to postcopy; returns its raw data, or
    {"error": ...}, or {"unavailable": ...} for a capability the VMM lacks."""
    load, mem, smp, state, preempt = cfg
    spec = LOADS[load]
    append = "%s report=%d" % (spec["append"], opts.pcp_report_ms)
    tag = "pcp-%s-%d-%d" % (load, mem, smp)
    uri = "unix:" + os.path.join(tmp, "%s-%s-mig.sock" % (vmm, tag))
    deferred = opts.pcp_incoming == "defer"
    dst = bl.Guest(vmm, mem, smp, append, tmp, tag + "-dst",
                   extra=["-incoming", "defer" if deferred else uri])
    src = None
    try:
        have = cap_names(dst)
        if preempt and "postcopy-preempt" not in have:
            return {"unavailable": "postcopy-preempt is not in query-migrate-capabilities"}
        caps = {"events": True, "postcopy-ram": True}
        if preempt:
            caps["postcopy-preempt"] = True
        blocktime = "postcopy-blocktime" in have
        dcaps = dict(caps)
        if blocktime:
            dcaps["postcopy-blocktime"] = True
        err = dst.migrate_caps(dcaps)
        if err:
            return {"error": "destination capabilities: %s" % err, "dst_caps": sorted(have)}
        if deferred:
            dst.qmp.ok("migrate-incoming", {"uri": uri})
        src = bl.Guest(vmm, mem, smp, append, tmp, tag + "-src")
        err = src.migrate_caps(caps)
        if err:
            return {"error": "source capabilities: %s" % err}
        src.qmp.ok("migrate-set-parameters", {
            "max-bandwidth": opts.pcp_bandwidth, "downtime-limit": opts.pcp_downtime_ms,
            "max-postcopy-bandwidth": opts.pcp_postcopy_bandwidth})
        src.wait_reports(rounds=2)
        steady = src.wait_steady(spec["rate"], timeout=opts.pcp_warmup)
        # Cold: nothing but the steady source for the idle, the baseline its last seconds.
        time.sleep(max(opts.pcp_cold_idle, opts.pcp_baseline) if state == "cold"
                   else opts.pcp_baseline)
        src.check_alive()
        t_base = time.monotonic()
        touch_cost = settle_host(state, mem)
        clock = time.time() - time.monotonic()
        t0 = time.monotonic()
        src.qmp.ok("migrate", {"uri": uri})
        time.sleep(max(0.0, t0 + opts.pcp_switch_after - time.monotonic()))
        t_req = time.monotonic()
        r = src.qmp.cmd("migrate-start-postcopy")
        if "error" in r:
            return {"error": "migrate-start-postcopy: %s" % r["error"].get("desc"),
                    "src_info": src.qmp.ok("query-migrate")}
        info, seen = wait_status(src, opts.pcp_timeout)
        if info.get("status") != "completed":
            return {"error": "source %s after %.1f s: %s" % (
                info.get("status"), time.monotonic() - t0, info.get("error-desc")),
                "src_info": info, "dst_info": dst.qmp.ok("query-migrate")}
        dinfo, _ = wait_status(dst, opts.pcp_timeout)
        src_ev = migration_events(src, clock, "completed")
        dst_ev = migration_events(dst, clock, "completed")
        if dinfo.get("status") != "completed":
            return {"error": "destination %s: %s" % (dinfo.get("status"),
                                                     dinfo.get("error-desc")),
                    "src_info": info, "dst_info": dinfo}
        sw = first(src_ev, "postcopy-active") or seen.get("postcopy-active")
        end = first(src_ev, "completed") or seen["completed"]
        if sw is None:
            return {"error": "completed in precopy after %s ms, before the switch" % (
                info.get("total-time")), "src_info": info}
        # The measuring window: until every vCPU is back near its baseline.
        base = bgsnap.baseline(src.tail.snapshot(), t_base, opts.pcp_baseline)
        while time.monotonic() < end + opts.pcp_recovery_timeout:
            if bgsnap.recovered_at(merged(src, dst), base, end) is not None:
                break
            dst.check_alive()
            time.sleep(0.05)
        time.sleep(TAIL_S)
        dst.check_alive()
        reports = merged(src, dst)
        npages = [int(m.group(1)) for m in map(BANNER_RE.search, src.tail.lines) if m]
    finally:
        if src:
            src.kill()
        dst.kill()
    if not npages:
        return {"error": "no guest banner on the source's serial"}
    return {"reports": reports, "npages": npages[0], "t_base": t_base, "t0": t0,
            "t_req": t_req, "switch": sw, "end": end, "steady": steady is not None,
            "touch_s_per_gib": touch_cost, "blocktime_cap": blocktime, "dst_caps": sorted(have),
            "src_info": info, "dst_info": dinfo,
            "src_events": [(s, round(t - t0, 4)) for s, t in src_ev],
            "dst_events": [(s, round(t - t0, 4)) for s, t in dst_ev]}


# ---- figures ----

def counts(reports, npages):
    """{vcpu: [(arrival, writes so far, writes/s)]}: the random workload's
    pass and pos count every write the guest made, on either side."""
    out = {}
    for t, r in reports:
        out.setdefault(r["vcpu"], []).append(
            (t, (r["pass"] - 1) * npages + r["pos"], r["writes"]))
    return out


def count_at(pts, t, carry_forward):
    """A vCPU's write count at t, between reports.  At the switch
    (carry_forward) the last report's rate runs on to t, as the source did
    until it stopped; at the end the rate after the next report runs back to
    t.  Either way capped by the report on the other side of t."""
    after = [i for i, p in enumerate(pts) if p[0] > t]
    i = after[0] if after else len(pts)
    a = pts[i - 1] if i else None
    b = pts[i] if i < len(pts) else None
    if carry_forward:
        if a is None:
            return None
        est = a[1] + a[2] * (t - a[0])
        return min(est, b[1]) if b else est
    if b is None:
        return a[1] if a else None
    rate = pts[i + 1][2] if i + 1 < len(pts) else b[2]
    est = b[1] - rate * (b[0] - t)
    return max(est, a[1]) if a else est


def latency(info):
    """p50, p99 and max page-request latency (us) from `postcopy-latency-dist`,
    bucket N counting [2^N, 2^(N+1)) us, each as its bucket's upper bound;
    and the average (us) from `postcopy-latency` (ns).  None where absent."""
    dist, avg = info.get("postcopy-latency-dist"), info.get("postcopy-latency")
    qs = None
    if dist and sum(dist):
        n, qs = sum(dist), []
        for q in (0.5, 0.99):
            acc = 0
            for i, c in enumerate(dist):
                acc += c
                if acc >= q * n:
                    qs.append(2 ** (i + 1))
                    break
        qs.append(2 ** (max(i for i, c in enumerate(dist) if c) + 1))
    return qs, (avg / 1000.0 if avg is not None else None)


def figures(run, mem_mib, opts):
    """The table's figures from one run.  Writes are counted from the guest's
    own counter, not rate x interval: the report interval that spans the
    switch mixes the source's full rate with the destination's crawl, and
    at 100 ms it would outweigh a postcopy phase's whole figure."""
    reports, sw, end = run["reports"], run["switch"], run["end"]
    base = bgsnap.baseline(reports, run["t_base"], opts.pcp_baseline)
    ivs = bl.per_vcpu(reports)
    pts = counts(reports, run["npages"])
    rec = bgsnap.recovered_at(reports, base, end)
    done = want = 0.0
    lost, steady = [], []
    for v, b in base.items():
        at_sw = count_at(pts[v], sw, True)
        at_end = count_at(pts[v], end, False)
        if at_sw is not None and at_end is not None:
            done += max(0.0, at_end - at_sw)
            want += b * (end - sw)
        if rec and at_sw is not None:
            at_rec = next(w for t, w, _ in pts[v] if t == rec[v])
            lost.append(((rec[v] - sw) * b - (at_rec - at_sw)) / b)
        else:
            last = ivs[v][-1][1]
            tail = [r["writes"] for s, e, r in ivs[v] if e >= last - STEADY_S and s >= end]
            steady.append((bl.median(tail), b))
    phase = [r for v in ivs for s, e, r in ivs[v] if bgsnap.overlap(s, e, sw, end) > 0]
    before = [r for v in ivs for s, e, r in ivs[v]
              if run["t_base"] - opts.pcp_baseline <= e <= run["t_base"]]
    src, dst = run["src_info"], run["dst_info"]
    ram = src.get("ram") or {}
    lat, lat_avg = latency(dst)
    return {
        "baseline_writes_s": sorted(base.values()),
        "steady_before": run["steady"],
        "touch_s_per_gib": run["touch_s_per_gib"],
        "switch_s": sw - run["t0"],
        "total_s": src["total-time"] / 1000.0 if src.get("total-time") is not None else None,
        "postcopy_s": end - sw,
        "downtime_ms": src.get("downtime"),
        "dst_rate_pct": 100.0 * done / want if want else None,
        "time_lost_s": sum(lost) / len(lost) if lost else None,
        "recovered_s": max(rec.values()) - end if rec else None,
        "dst_steady_pct": (100.0 * sum(m / b for m, b in steady if m is not None) / len(steady)
                           if steady and all(m is not None for m, _ in steady) else None),
        "latency_us": lat,
        "latency_avg_us": lat_avg,
        "blocktime_ms": dst.get("postcopy-blocktime") if run["blocktime_cap"] else None,
        "stall_max_us": max((r["maxstall_us"] for r in phase), default=None),
        "baseline_stall_max_us": max((r["maxstall_us"] for r in before), default=None),
        "sent_per_ram": ram["transferred"] / (mem_mib << 20) if "transferred" in ram else None,
        "postcopy_requests": ram.get("postcopy-requests"),
        "postcopy_bytes": ram.get("postcopy-bytes"),
    }


def series(run):
    """Per vCPU: (seconds since the switch, writes/s, maxstall_us)."""
    return {v: [(round(e - run["switch"], 3), r["writes"], r["maxstall_us"]) for s, e, r in ivs]
            for v, ivs in bl.per_vcpu(run["reports"]).items()}


# ---- rounds and rows ----

def measure(vmm, cfg, rnd, tmp, opts):
    if vmm == "qemu" and not bl.QEMU:
        res = {"error": "qemu-system-x86_64 not installed"}
    else:
        try:
            run = migrate_run(vmm, cfg, tmp, opts)
        except Exception as e:  # one failed migration is a row, not the end of the run
            run = {"error": "%s: %s" % (type(e).__name__, str(e)[:600])}
        if "reports" in run:
            res = {"figures": figures(run, cfg[1], opts), "series": series(run),
                   "dst_caps": run["dst_caps"],
                   "src_info": run["src_info"], "dst_info": run["dst_info"],
                   "src_events": run["src_events"], "dst_events": run["dst_events"]}
        else:
            res = run
    print(json.dumps({"config": cfg, "vmm": vmm, "round": rnd, **{
        k: v for k, v in res.items() if k not in ("series", "src_info", "dst_info")}}),
        flush=True)
    return res


def combine(results):
    """One VMM's rounds of one configuration: the round with the median
    postcopy phase, its scalar figures replaced by the medians over rounds."""
    good = [r for r in results if "figures" in r]
    if not good:
        return results[0]
    res = dict(sorted(good, key=lambda r: r["figures"]["postcopy_s"])[(len(good) - 1) // 2])
    figs = dict(res["figures"])
    for k, v in figs.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            vals = [r["figures"][k] for r in good if r["figures"][k] is not None]
            figs[k] = bl.median(vals)
    res["figures"] = figs
    res["rounds"] = [r.get("figures") for r in results]
    res["failed_rounds"] = len(results) - len(good)
    return res


def configs(opts):
    preempts = {"both": (False, True), "off": (False,), "on": (True,)}[opts.pcp_preempt]
    return [(load, mem, smp, state, preempt) for load in opts.pcp_loads
            for mem in opts.pcp_mem_mib or LOADS[load]["mem_mib"] for smp in opts.pcp_smp
            for state in opts.pcp_states for preempt in preempts]


def bench(opts, tmp):
    rows = []
    for cfg in configs(opts):
        load, mem, smp, state, preempt = cfg
        row = {"scenario": NAME, "load": load, "mem_mib": mem, "smp": smp, "state": state,
               "preempt": preempt, "append": LOADS[load]["append"], "rounds": opts.pcp_rounds}
        results = {vmm: [] for vmm in opts.pcp_vmms}
        for rnd in range(1, opts.pcp_rounds + 1):
            for vmm in opts.pcp_vmms:
                # What a VMM lacks, it lacks in every round.
                if results[vmm] and "unavailable" in results[vmm][0]:
                    continue
                results[vmm].append(measure(vmm, cfg, rnd, tmp, opts))
        for vmm in opts.pcp_vmms:
            row[vmm] = combine(results[vmm])
        rows.append(row)
    return rows


# ---- the doc ----

fmt, spread = bgsnap.fmt, bgsnap.spread


def config_cells(row, f=None):
    host = row["state"]
    if f and f.get("touch_s_per_gib") is not None:
        host += " (%.2f s/GiB)" % f["touch_s_per_gib"]
    return "| %s | %d MiB | %d | %s | %s |" % (
        row["load"], row["mem_mib"], row["smp"], host, "on" if row["preempt"] else "off")


def lost_cell(res, opts):
    f = res["figures"]
    if f["time_lost_s"] is not None:
        return fmt(f["time_lost_s"], "%.3f") + spread(res, "time_lost_s", "%.3f")
    return "not back within %g s: steady %s of baseline" % (
        opts.pcp_recovery_timeout, fmt(f["dst_steady_pct"], "%.0f %%"))


def latency_cell(f):
    if not f["latency_us"]:
        return "n/a"
    return "<%d / <%d / <%d (avg %s)" % (tuple(f["latency_us"]) + (
        fmt(f["latency_avg_us"], "%.0f"),))


def table(rows, opts):
    lines = ["| load | RAM | vCPUs | host (touch CPU s/GiB) | preempt | VMM "
             "| baseline writes/s/vCPU | switch at (s) | total (s) | postcopy phase (s) "
             "| downtime (ms) | destination rate in postcopy | guest time lost (s) "
             "| page latency p50 / p99 / max (us) | blocktime (ms) "
             "| max stall (ms) (baseline) | sent / RAM | postcopy requests |",
             "|---" * 18 + "|"]
    for row in rows:
        for vmm in opts.pcp_vmms:
            res = row.get(vmm)
            if res is None:
                continue
            label = bl.VMM_LABEL[vmm]
            if "figures" not in res:
                what = ("not available (%s)" % res["unavailable"] if "unavailable" in res
                        else "failed: " + res["error"].replace("|", "/").replace("\n", " ")[:200])
                lines.append(config_cells(row) + " %s | %s |" % (label, what) + "  |" * 11)
                continue
            f = res["figures"]
            if res.get("failed_rounds"):
                label += " (%d of %d rounds failed)" % (res["failed_rounds"], len(res["rounds"]))
            lines.append(config_cells(row, f) + (
                " %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    label,
                    " / ".join("%.3g" % b for b in f["baseline_writes_s"])
                    + ("" if f["steady_before"] else " (not steady)"),
                    fmt(f["switch_s"], "%.2f"), fmt(f["total_s"], "%.2f"),
                    fmt(f["postcopy_s"], "%.2f") + spread(res, "postcopy_s", "%.2f"),
                    fmt(f["downtime_ms"], "%d"), fmt(f["dst_rate_pct"], "%.2g %%"),
                    lost_cell(res, opts), latency_cell(f),
                    fmt(f["blocktime_ms"], "%d", "n/a"),
                    "%s (%s)" % (fmt(f["stall_max_us"] and f["stall_max_us"] / 1000.0, "%.1f"),
                                 fmt(f["baseline_stall_max_us"] and
                                     f["baseline_stall_max_us"] / 1000.0, "%.1f")),
                    fmt(f["sent_per_ram"], "%.2f"), fmt(f["postcopy_requests"], "%d"))))
    lines += ["", "amber / QEMU 7.2, same configuration in the same run:", "",
              "| load | RAM | vCPUs | host | preempt | guest time lost | page latency p99 "
              "| postcopy phase | downtime | max stall |",
              "|---|---|---|---|---|---|---|---|---|---|"] + [ratio_line(r) for r in rows]
    return "\n".join(lines + ["", definitions(opts)])


def ratio_line(row):
    a, q = row.get("amber") or {}, row.get("qemu") or {}
    head = config_cells(row)
    for name, res in (("amber", a), ("QEMU 7.2", q)):
        if "figures" not in res:
            why = "not available" if "unavailable" in res else "failed" if res else "not run"
            return head + " %s: %s |  |  |  |  |" % (name, why)
    fa, fq = a["figures"], q["figures"]

    def ratio(key, pick=lambda x: x):
        x, y = fa.get(key), fq.get(key)
        x, y = (None if x is None else pick(x)), (None if y is None else pick(y))
        if key == "latency_us" and y is None:
            return "n/a"
        return "%.3g" % (x / y) if x is not None and y else "-"

    lost = ratio("time_lost_s")
    if fa["time_lost_s"] is None or fq["time_lost_s"] is None:
        lost = "n/a (not back)"
    return head + " %s | %s | %s | %s | %s |" % (
        lost, ratio("latency_us", lambda l: l[1]), ratio("postcopy_s"),
        ratio("downtime_ms"), ratio("stall_max_us"))


DEFINITIONS_TEXT = """\
Guest: the built-in guest, `report=%d`; loads: hammer = %s;
busy = %s.
For each VMM a destination, %s,
and a source run on this 2-core host (QEMU with `-accel kvm`), with capabilities `events`
and `postcopy-ram` on both sides (`postcopy-preempt` too in the rows that say so;
`postcopy-blocktime` on the destination where the VMM lists it), and on the source
`max-bandwidth` %d MiB/s, `max-postcopy-bandwidth` %s and `downtime-limit` %d ms (low, so
that no load converges in precopy before the switch). Once the source writes at a steady
rate: `migrate`, exactly %g s later `migrate-start-postcopy`, then `query-migrate` on both
sides until `completed`. The two VMMs run in turn, never at once. QEMU 7.2 switches at
once; amber once its first pass over RAM is out (docs/qmp-reference.md), so for the same
request its switch may come later, with more of RAM already at the destination.

- **host**: how the memory the destination fills was left. cold: once the source was
  steady the harness did nothing for %g s, long enough for this host to give free memory
  back to its hypervisor (docs/performance.md, above); warm: right before `migrate` the
  harness faulted in and freed 1.25 x the guest's RAM of anonymous memory
  (`MAP_POPULATE`), so the host backs what the destination takes first (what stays free
  for a few seconds goes back again, so a long postcopy phase ends on cold memory). In
  brackets: CPU seconds per GiB the harness spent faulting in a 64 MiB probe right before
  `migrate` (lower when the host backs free memory; CPU time, so that the guest's vCPUs
  holding the CPU do not count).
- **baseline**: per vCPU, the median of the source guest's reported writes/s over the
  %g s before the host was settled.
- **switch at**: from `migrate` sent to the source's MIGRATION `postcopy-active` event (the
  switch). **total**: the source's `total-time`. **postcopy phase**: the source's
  `postcopy-active` to `completed` events. **downtime**: the source's `downtime`.
- **destination rate in postcopy**: writes the guest made on the destination during the
  postcopy phase over the writes its baseline rate gives in that time, all vCPUs. Counted
  by the guest itself (the random workload's pass and pos in each report line count its
  writes); between its last report and the switch the source is taken to write at that
  report's rate, and from the end to the next report at the rate after it.
- **guest time lost**: per vCPU, (writes at the baseline rate - writes done) / baseline
  rate from the switch until the end of the first report interval after completion that
  is within 10 %% of the baseline (as in the bgsnap section, with the writes counted as
  above); the mean over vCPUs. When some vCPU is not back within %g s of completion, the
  destination's steady rate instead: the median of its last %g s, as a share of baseline.
- **page latency**: the destination's `postcopy-latency-dist` (bucket N counts faults
  resolved in [2^N, 2^(N+1)) us): the upper bounds of the buckets holding the median, the
  99th percentile and the largest; avg = `postcopy-latency`. n/a where the VMM does not
  report it (QEMU 7.2). **blocktime**: the destination's `postcopy-blocktime`, n/a without
  the capability.
- **max stall**: the largest `maxstall_us` of the guest's report intervals overlapping the
  postcopy phase (either side); in brackets the largest of the baseline window, the
  host's noise floor.
- **sent / RAM**: the source's `ram.transferred` over the RAM size; **postcopy requests**:
  the source's `ram.postcopy-requests`.
- **rounds**: with `--pcp-rounds N`, each figure is the median over the rounds (guest time
  lost and postcopy phase with their range in brackets).
- Ratios are amber / QEMU 7.2 of the figures above (p99 latency: n/a while QEMU does not
  report it)."""


def definitions(opts):
    pbw = opts.pcp_postcopy_bandwidth
    incoming = ("started with `-incoming defer`, its capabilities set, then `migrate-incoming "
                "unix:SOCKET`" if opts.pcp_incoming == "defer" else
                "started with `-incoming unix:SOCKET`, then its capabilities set")
    return DEFINITIONS_TEXT % (
        opts.pcp_report_ms, LOADS["hammer"]["what"], LOADS["busy"]["what"], incoming,
        opts.pcp_bandwidth >> 20, "%d MiB/s" % (pbw >> 20) if pbw else "0 (no limit)",
        opts.pcp_downtime_ms, opts.pcp_switch_after, opts.pcp_cold_idle, opts.pcp_baseline,
        opts.pcp_recovery_timeout, STEADY_S)


def add_args(ap):
    for flag, dest, default, kw in OPTIONS:
        ap.add_argument(flag, dest=dest, default=default, **kw)


def command(opts):
    cmd = "tests/bench/run.py --only postcopy"
    for flag, dest, default, kw in OPTIONS:
        value = getattr(opts, "_given_" + dest, getattr(opts, dest))
        if kw.get("action") == "append":
            cmd += "".join(" %s %s" % (flag, v) for v in value or ())
        elif value != default:
            cmd += " %s %s" % (flag, value)
    return cmd


def run(opts, tmp, write_doc=None):
    """The scenario as run.py calls it: bench, print, raw JSON, doc."""
    for _, dest, _, kw in OPTIONS:
        if kw.get("action") == "append":
            # command() writes what was given, not the defaults filled in below.
            setattr(opts, "_given_" + dest, getattr(opts, dest))
    opts.pcp_loads = opts.pcp_loads or list(LOADS)
    opts.pcp_smp = opts.pcp_smp or [1]
    opts.pcp_states = opts.pcp_states or list(STATES)
    opts.pcp_vmms = opts.pcp_vmms or list(VMMS)
    if opts.pcp_rounds < 1:
        raise SystemExit("--pcp-rounds must be at least 1")
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
