"""Background snapshot benchmark: what a live snapshot costs a busy guest.

For each load, the same built-in guest runs under amber, amber without
UFFD_FEATURE_WP_UNPOPULATED (masked off through the engine's test knob, as on
a kernel older than 6.4) and QEMU 7.2, one after the other.  Each run: boot,
warm up, record a baseline, take one background snapshot (`migrate fd:` to a
file with capability background-snapshot), keep recording until the guest is
back to its baseline, then kill the VMM.  The guest's own report lines
(`report=100`, timestamped on arrival) give the time series; QMP gives pause
and total time; /proc gives memory.
"""
import io
import json
import os
import sys
import time

import benchlib as bl

LOADS = {
    "busy": {"mem_mib": 1024,
             "append": "workload=random rate=50000", "rate": 50000,
             "what": "`workload=random rate=50000` (pages/s per vCPU) over 1 GiB"},
    "hammer-1g": {"mem_mib": 1024, "append": "workload=random",
                  "what": "uncapped `workload=random` over all of 1 GiB"},
    "hammer-4g": {"mem_mib": 4096, "append": "workload=random",
                  "what": "uncapped `workload=random` over all of 4 GiB"},
    "sparse": {"mem_mib": 16384, "append": "workload=random ws_mib=256",
               "what": "16 GiB guest, uncapped `workload=random ws_mib=256`"},
}
VMMS = ("amber", "amber-direct", "amber-64k", "amber-nowpu", "qemu")
AMBERS = ("amber", "amber-direct", "amber-64k")     # the rows held to the goals
SMP = 2
# Effectively no limit, given explicitly: QEMU 7.2 throttles a background
# snapshot to max-bandwidth (32 MiB/s by default), amber has none by default.
MAX_BANDWIDTH = 64 << 30
RECOVERED = 0.9          # back "within 10 %" of the baseline rate


def load_guest(load, vmm, tmp, opts, env=None):
    """The load's guest, started under vmm (the caller kills it)."""
    spec = LOADS[load]
    append = "%s report=%d" % (spec["append"], opts.report_ms)
    return bl.Guest(vmm, spec["mem_mib"], SMP, append, tmp, load, env=env)


def warm_up(g, load, opts):
    """Warm-up (populate what the load touches), the baseline, then the
    capability on.  Returns the warm-up seconds and the VMM's refusal of
    background-snapshot, None when it took it."""
    g.wait_reports(rounds=2)
    warm = g.wait_steady(LOADS[load].get("rate", 0), timeout=opts.warmup)
    time.sleep(opts.baseline)
    g.check_alive()
    return warm, g.migrate_caps({"background-snapshot": True})


def snapshot_run(load, vmm, tmp, opts, bandwidth=MAX_BANDWIDTH, probe=None):
    """One VMM, one load, one snapshot; returns the raw series and figures.
    probe (schedtrace.py) is started just before `migrate` and stopped once
    the snapshot has ended."""
    spec = LOADS[load]
    env = {}
    if vmm == "amber-nowpu":
        env["AMBER_TEST_UFFD_FEATURES_MASK"] = bl.NO_WP_UNPOPULATED_MASK
    g = load_guest(load, vmm, tmp, opts, env)
    img = os.path.join(tmp, "%s-%s.snap" % (vmm, load))
    try:
        warm, err = warm_up(g, load, opts)
        if err:
            return {"error": "background-snapshot refused: %s" % err}
        params = {"max-bandwidth": bandwidth}
        if vmm != "qemu":
            params.update(opts.bg_params or {})
        if vmm == "amber-64k":
            params["x-background-snapshot-chunk-size"] = 64 << 10
        if vmm == "amber-direct":
            params["direct-io"] = True
            uri = "file:" + img
        else:
            # QEMU 7.2 has no file: URI: a descriptor to the file, for all.
            fd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                g.pass_fd("snap", fd)
            finally:
                os.close(fd)
            uri = "fd:snap"
        g.qmp.ok("migrate-set-parameters", params)
        ram_before = g.ram_rss_bytes()
        rss_before = rss_max = g.rss_bytes()
        if probe:
            probe.start(g)
        t0 = time.monotonic()
        g.qmp.ok("migrate", {"uri": uri})
        while True:
            info = g.qmp.ok("query-migrate")
            rss_max = max(rss_max, g.rss_bytes())
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            if time.monotonic() - t0 > opts.snap_timeout:
                g.qmp.cmd("migrate_cancel")
                return {"error": "no completion within %ss" % opts.snap_timeout}
            # A snapshot holds each page once: far more means a runaway stream,
            # stop it before it fills the disk.
            if os.path.getsize(img) > 2 * (spec["mem_mib"] << 20) + (64 << 20):
                g.qmp.cmd("migrate_cancel")
                return {"error": "image grew beyond twice the RAM size"}
            time.sleep(0.02)
        t1 = time.monotonic()
        if probe:
            probe.stop(g)
        if info["status"] != "completed":
            return {"error": "snapshot %s: %s" % (info["status"], info.get("error-desc"))}
        # Recovery: until every vCPU has a full interval back at its rate,
        # then a little more for the plot.
        deadline = t1 + opts.recovery_timeout
        while time.monotonic() < deadline:
            base = baseline(g.tail.snapshot(), t0, opts.baseline)
            if recovered_at(g.tail.snapshot(), base, t1) is not None:
                break
            g.check_alive()
            time.sleep(0.05)
        time.sleep(opts.tail)
        reports = g.tail.snapshot()
        g.check_alive()
        image = os.path.getsize(img)
    finally:
        g.kill()
        if os.path.exists(img):
            os.unlink(img)
    return {"t0": t0, "t1": t1, "reports": reports, "info": info, "warmup_s": warm,
            "ram_rss_before": ram_before, "rss_before": rss_before, "rss_max": rss_max,
            "image_bytes": image}


def baseline(reports, t0, seconds):
    """{vcpu: median writes/s} over the intervals ending in [t0 - seconds, t0]."""
    per = {}
    for v, ivs in bl.per_vcpu(reports).items():
        w = [r["writes"] for s, e, r in ivs if t0 - seconds <= e <= t0]
        if w:
            per[v] = bl.median(w)
    return per


def recovered_at(reports, base, t1):
    """{vcpu: end of the first interval after t1 back within 10 % of the
    baseline}, or None while some vCPU has not recovered."""
    out = {}
    for v, ivs in bl.per_vcpu(reports).items():
        for s, e, r in ivs:
            if s >= t1 and r["writes"] >= RECOVERED * base.get(v, 0):
                out[v] = e
                break
    return out if base and set(out) == set(base) else None


def overlap(s, e, a, b):
    """Fraction of the interval [s, e] that lies in [a, b]."""
    if e <= s:
        return 0.0
    return max(0.0, min(e, b) - max(s, a)) / (e - s)


def figures(run, opts):
    """The table's figures from one run's raw data."""
    reports, t0, t1, info = run["reports"], run["t0"], run["t1"], run["info"]
    base = baseline(reports, t0, opts.baseline)
    rec = recovered_at(reports, base, t1) or {}
    ivs = bl.per_vcpu(reports)
    lost, kept_w, kept_b = [], 0.0, 0.0
    in_snap = []
    for v, b in base.items():
        end = rec.get(v, max(e for s, e, r in ivs[v]))
        lost_v = 0.0
        for s, e, r in ivs[v]:
            f = overlap(s, e, t0, end)
            lost_v += f * (e - s) * (b - r["writes"]) / b if b else 0.0
            g = overlap(s, e, t0, t1)
            if g > 0:
                kept_w += g * (e - s) * r["writes"]
                kept_b += g * (e - s) * b
                in_snap.append(r)
        lost.append(lost_v)
    p99s = [r["p99_us"] for r in in_snap]
    maxs = [r["maxstall_us"] for r in in_snap]
    before = [r for v in ivs for s, e, r in ivs[v] if t0 - opts.baseline <= e <= t0]
    bgs = info.get("x-background-snapshot") or {}
    ram = info.get("ram") or {}
    return {
        "baseline_writes_s": sorted(base.values()),
        "retained_pct": 100.0 * kept_w / kept_b if kept_b else None,
        "time_lost_s": sum(lost) / len(lost) if lost else None,
        "recovered_s": (max(rec.values()) - t0) if len(rec) == len(base) and rec else None,
        "stall_p50_us": bl.median(p99s),
        "stall_p99_us": max(p99s) if p99s else None,
        "stall_max_us": max(maxs) if maxs else None,
        "baseline_stall_max_us": max((r["maxstall_us"] for r in before), default=None),
        "pause_ms": info.get("downtime"),
        "pause_us": bgs.get("pause-us"),
        "snapshot_ms": info.get("total-time"),
        "wall_s": t1 - t0,
        "image_bytes": run["image_bytes"],
        "populated_bytes": run["ram_rss_before"],
        "normal_bytes": ram.get("normal-bytes"),
        "image_per_populated": (run["image_bytes"] / run["ram_rss_before"]
                                if run["ram_rss_before"] else None),
        "rss_before": run["rss_before"],
        "rss_growth_pct": 100.0 * (run["rss_max"] - run["rss_before"]) / run["rss_before"],
        "warmup_s": run["warmup_s"],
        "baseline_s": opts.baseline,
        "engine": bgs,
    }


def series(run):
    """Per vCPU: (time since snapshot start, maxstall_us, p99_us, writes/s)."""
    out = {}
    for v, ivs in bl.per_vcpu(run["reports"]).items():
        out[v] = [(round(e - run["t0"], 3), r["maxstall_us"], r["p99_us"], r["writes"])
                  for s, e, r in ivs]
    return out


def plot(load, results, path):
    """Stalls over time, one panel per VMM, the snapshot window shaded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    vmms = [v for v in VMMS if "series" in results.get(v, {})]
    if not vmms:
        return False
    fig, axes = plt.subplots(len(vmms), 1, figsize=(7, 1.9 * len(vmms) + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for ax, vmm in zip(axes[:, 0], vmms):
        res = results[vmm]
        ax.axvspan(0, res["figures"]["wall_s"], color="0.85", label="snapshot")
        for v, pts in sorted(res["series"].items(), key=lambda kv: int(kv[0])):
            c = colours[int(v) % len(colours)]
            t = [p[0] for p in pts]
            ax.plot(t, [max(p[1], 1) for p in pts], color=c, lw=1,
                    label="vCPU %s max" % v)
            ax.plot(t, [max(p[2], 1) for p in pts], color=c, lw=1, ls="--",
                    label="vCPU %s p99" % v)
        ax.set_yscale("log")
        ax.set_title("%s: %s" % (load, bl.VMM_LABEL[vmm]), fontsize=9)
        ax.set_ylabel("stall (us)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, which="major", lw=0.3)
    # The baseline and after; not the warm-up.
    right = max(p[0] for v in vmms for pts in results[v]["series"].values() for p in pts)
    axes[0, 0].set_xlim(-(results[vmms[0]]["figures"]["baseline_s"] + 0.5), right)
    axes[0, 0].legend(fontsize=6, ncol=5, loc="upper right")
    axes[-1, 0].set_xlabel("seconds since the snapshot started", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # A 64-colour palette keeps each PNG a few tens of KiB in the repository.
    buf = io.BytesIO()
    fig.savefig(buf, dpi=72, format="png")
    plt.close(fig)
    from PIL import Image
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return True


# Figures a row shows as the median over rounds; the rest (the baseline rates,
# image sizes, the engine's counters, the plotted series) come from one whole
# run, the one with the median guest time lost.
MEDIAN_FIGURES = ("retained_pct", "time_lost_s", "recovered_s", "stall_p50_us",
                  "stall_p99_us", "stall_max_us", "baseline_stall_max_us", "pause_ms",
                  "pause_us", "snapshot_ms", "wall_s", "rss_growth_pct")


def combine(results):
    """One VMM's rounds of one load as one result: medians, and every round's figures
    (in round order, so that round i of amber pairs with round i of QEMU)."""
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0]
    by_lost = sorted(good, key=lambda r: r["figures"]["time_lost_s"] or 0.0)
    res = dict(by_lost[(len(by_lost) - 1) // 2])
    res["figures"] = dict(res["figures"])
    for key in MEDIAN_FIGURES:
        vals = [r["figures"][key] for r in good if r["figures"][key] is not None]
        res["figures"][key] = bl.median(vals)
    res["rounds"] = [r.get("figures") for r in results]
    res["failed_rounds"] = len(results) - len(good)
    return res


def measure(load, vmm, rnd, tmp, opts, bandwidth=MAX_BANDWIDTH):
    """Round rnd of one VMM on one load: its figures, series and QMP info (or
    {"error": ...}), also printed as a JSON line."""
    if vmm == "qemu" and not bl.QEMU:
        res = {"error": "qemu-system-x86_64 not installed"}
    else:
        try:
            run = snapshot_run(load, vmm, tmp, opts, bandwidth)
        except RuntimeError as e:
            run = {"error": str(e)}
        res = {"error": run["error"]} if "error" in run else {
            "figures": figures(run, opts), "series": series(run), "info": run["info"]}
    print(json.dumps({"load": load, "vmm": vmm, "round": rnd,
                      **{k: v for k, v in res.items() if k not in ("series", "info")}}),
          flush=True)
    return res


def bench(opts, tmp):
    """Every selected load under every VMM, opts.rounds times (the VMMs in turn
    within a round, so that each pair of runs saw the host at about the same
    time); returns the rows."""
    rows = []
    vmms = opts.bg_vmms or VMMS
    for load in opts.bg_loads:
        row = {"scenario": "bgsnap", "load": load, "mem_mib": LOADS[load]["mem_mib"],
               "smp": SMP, "append": LOADS[load]["append"], "rounds": opts.rounds}
        results = {vmm: [] for vmm in vmms}
        for rnd in range(1, opts.rounds + 1):
            for vmm in vmms:
                results[vmm].append(measure(load, vmm, rnd, tmp, opts))
        for vmm in vmms:
            row[vmm] = combine(results[vmm])
        if opts.plots:
            png = os.path.join(opts.plot_dir, "bgsnap-%s.png" % load)
            row["plot"] = os.path.relpath(png, os.path.join(bl.ROOT, "docs"))
            if not plot(load, row, png):
                row.pop("plot")
        rows.append(row)
    return rows


# ---- the doc ----

def fmt(x, spec="%.3g", none="-"):
    return none if x is None else spec % x


def ratio(a, q, goal):
    """amber/QEMU and whether it meets `goal` (the most the ratio may be)."""
    if a is None or q is None or q == 0:
        return "-"
    r = a / q
    return "%.3g %s" % (r, "ok" if r <= goal else "**miss** (goal <= %g)" % goal)


def table(rows, opts):
    lines = [
        "| load | VMM | baseline writes/s/vCPU | retained | guest time lost (s) "
        "| back to baseline (s) | stall p50 / p99 / max (us) | baseline max stall (us) "
        "| pause (ms) "
        "| snapshot (s) | image / populated (RSS / data pages) | populated MiB | RSS growth |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for row in rows:
        for vmm in VMMS:
            res = row.get(vmm)
            if res is None:
                continue
            label = bl.VMM_LABEL[vmm]
            if "error" in res:
                lines.append("| %s | %s | %s |  |  |  |  |  |  |  |  |  |  |" % (
                    row["load"], label, "failed: " + res["error"].replace("|", "/")[:160]))
                continue
            f = res["figures"]
            pause = f["pause_us"] / 1000.0 if f["pause_us"] is not None else f["pause_ms"]
            if res.get("failed_rounds"):
                label += " (%d of %d rounds failed)" % (res["failed_rounds"],
                                                        len(res["rounds"]))
            lines.append(
                "| %s | %s | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s / %s | %s "
                "| %s |" % (
                    row["load"], label,
                    " / ".join("%.3g" % b for b in f["baseline_writes_s"])
                    + ("" if f["warmup_s"] is not None else " (not steady)"),
                    fmt(f["retained_pct"], "%.0f %%"),
                    fmt(f["time_lost_s"], "%.3f") + spread(res, "time_lost_s", "%.3f"),
                    fmt(f["recovered_s"], "%.2f"),
                    fmt(f["stall_p50_us"], "%d"), fmt(f["stall_p99_us"], "%d"),
                    fmt(f["stall_max_us"], "%d") + spread(res, "stall_max_us", "%d"),
                    fmt(f.get("baseline_stall_max_us"), "%d")
                    + spread(res, "baseline_stall_max_us", "%d"),
                    fmt(pause, "%.2f"),
                    fmt(f["snapshot_ms"] / 1000.0 if f["snapshot_ms"] is not None else None,
                        "%.2f"),
                    fmt(f["image_per_populated"], "%.3f"),
                    fmt(f["image_bytes"] / f["normal_bytes"] if f["normal_bytes"] else None,
                        "%.3f"),
                    fmt(f["populated_bytes"] / 2**20, "%.0f"),
                    fmt(f["rss_growth_pct"], "%.1f %%")))
        goals += [goal_line(row, vmm) for vmm in AMBERS if row.get(vmm)]
    lines += ["", "amber's own counters (`query-migrate` member `x-background-snapshot`):", "",
              "| load | VMM | write faults | pages copied by faults | pages skipped "
              "| pool high water / size (MiB) | write-protect (ms) of pause (ms) "
              "| fault stall p50 / p99 / max (us) | huge pages restored |",
              "|---|---|---|---|---|---|---|---|---|"] + engine_lines(rows)
    lines += ["", "Goals (amber against QEMU 7.2 in the same run; the ratio of the medians, "
              "then each round's own ratio):", ""]
    lines += ["| load | VMM | guest time lost <= 1/10 | max stall <= 1/10 "
              "| snapshot time <= 1/5 | image <= 1.01 x populated | pause <= 5 ms (sparse) "
              "| RSS growth < 5 % (sparse) |",
              "|---|---|---|---|---|---|---|---|"] + goals
    plots = ["![%s](%s)" % (r["load"], r["plot"]) for r in rows if r.get("plot")]
    return "\n".join(lines + [""] + [definitions(opts)] + ([""] + plots if plots else []))


def spread(res, key, spec):
    """ " (lo-hi)" over the rounds, when there was more than one."""
    vals = [r[key] for r in res.get("rounds") or () if r and r.get(key) is not None]
    if len(vals) < 2:
        return ""
    return " (%s-%s)" % (spec % min(vals), spec % max(vals))


def round_ratios(a_res, q_res, key):
    """amber/QEMU per round, for the rounds both completed."""
    out = []
    for a, q in zip(a_res.get("rounds") or (), q_res.get("rounds") or ()):
        if a and q and a.get(key) is not None and q.get(key):
            out.append(a[key] / q[key])
    return out


def engine_lines(rows):
    out = []
    for row in rows:
        for vmm in AMBERS + ("amber-nowpu",):
            e = ((row.get(vmm) or {}).get("figures") or {}).get("engine")
            if not e:
                continue
            out.append("| %s | %s | %d | %d | %d | %.1f / %.0f | %.2f of %.2f | %d / %d / %d "
                       "| %d |" % (
                row["load"], bl.VMM_LABEL[vmm], e["write-faults"], e["fault-pages"],
                e["pages-skipped"], e["pool-high-water-bytes"] / 2**20, e["pool-size"] / 2**20,
                e["write-protect-us"] / 1000.0, e["pause-us"] / 1000.0,
                e["stall-p50-us"], e["stall-p99-us"], e["stall-max-us"],
                e.get("huge-pages-restored", 0)))
    return out


def goal_line(row, vmm):
    a_res, q_res = row.get(vmm) or {}, row.get("qemu") or {}
    a, q = a_res.get("figures"), q_res.get("figures")
    label = bl.VMM_LABEL[vmm]
    if not a:
        return "| %s | %s | failed |  |  |  |  |  |" % (row["load"], label)
    q = q or {}

    def cell(key, goal):
        per = round_ratios(a_res, q_res, key)
        text = ratio(a[key], q.get(key), goal)
        if len(per) > 1:
            text += "; rounds %s" % ", ".join("%.2g" % r for r in per)
        return text

    img = a["image_per_populated"]
    cells = [cell("time_lost_s", 0.1), cell("stall_max_us", 0.1), cell("snapshot_ms", 0.2),
             "%.3f %s" % (img, "ok" if img <= 1.01 else "**miss**") if img else "-"]
    if row["load"] == "sparse":
        pause = a["pause_us"] / 1000.0 if a["pause_us"] is not None else a["pause_ms"]
        cells.append("%.2f ms %s" % (pause, "ok" if pause <= 5 else "**miss**")
                     if pause is not None else "-")
        g = a["rss_growth_pct"]
        cells.append("%.1f %% %s" % (g, "ok" if g < 5 else "**miss**"))
    else:
        cells += ["", ""]
    return "| %s | %s | %s |" % (row["load"], label, " | ".join(cells))


DEFINITIONS_TEXT = """\
Guest: the built-in guest, 2 vCPUs, `report=100`; loads: busy = %s; hammer = %s;
sparse = %s. Each VMM runs alone, one after the other, on the same 2-core host; QEMU with
`-accel kvm`, both with `max-bandwidth` %d GiB/s (no limit in practice) and `migrate
fd:NAME` to a file (descriptor passed with `getfd`, as QEMU 7.2 has no `file:`), except
"amber, file: direct-io": `migrate file:PATH` with the `direct-io` parameter on (O_DIRECT,
docs/devel/migration.md). "amber, 64 KiB units": `x-background-snapshot-chunk-size` 65536
instead of 2 MiB (huge pages that faults split are collapsed again,
docs/devel/background-snapshot.md). amber without WP_UNPOPULATED:
`AMBER_TEST_UFFD_FEATURES_MASK=%s` (populate-by-read, as QEMU does).

- **baseline**: per vCPU, the median of the guest's reported writes/s over the %s s before
  `migrate` was sent.
- **retained**: writes done during the snapshot (from `migrate` sent to `completed` seen)
  over the writes the baseline rate gives in that time, all vCPUs.
- **guest time lost**: per vCPU, (writes at the baseline rate - writes done) / baseline
  rate, from `migrate` sent until the end of the first report interval after completion
  whose rate is within 10 %% of the baseline (so recovery counts); the mean over vCPUs.
  Report intervals are laid on the harness clock by their arrival on the serial file and
  counted pro rata where they straddle a bound.
- **back to baseline**: from `migrate` sent to that recovery, the slower vCPU; "-" when a
  vCPU was not back within %s s after completion (guest time lost then runs to the end of
  the record, so it is a lower bound).
- **stall**: over every report interval (each vCPU) overlapping the snapshot: p50 = median
  of the intervals' `p99_us`, p99 = largest `p99_us`, max = largest `maxstall_us`. A stall
  sample is the guest's time between two TSC reads around a batch of writes (docs/guest.md),
  so it includes write-protect faults and host preemption. **baseline max stall**: the
  largest `maxstall_us` of the baseline window, with no snapshot running: the host's own
  noise floor for this figure (other processes, timer ticks, the harness's polling).
- **pause**: `x-background-snapshot.pause-us` for amber, `downtime` (ms) for QEMU.
- **snapshot**: `total-time`. **image / populated**: file size over the resident bytes of
  the guest RAM mapping (the largest mapping in /proc/PID/smaps) just before `migrate`
  (with transparent huge pages a touched 2 MiB counts whole), and over the bytes of the
  pages saved whole (`ram.normal-bytes`, the pages holding data at the instant).
- **RSS growth**: largest VmRSS of the VMM process sampled every 20 ms during the snapshot,
  over VmRSS before, minus one.
- **rounds**: with `--bg-rounds N`, every load runs N times, the VMMs in turn within a
  round. Each figure of the first table is the median over the rounds (guest time lost
  and the max stalls with their range in brackets); the engine's counters, the image
  and RSS figures and the plot come from the round with the median guest time lost.
- Ratios are amber / QEMU 7.2 and must be at most the goal."""


def definitions(opts):
    return DEFINITIONS_TEXT % (
        LOADS["busy"]["what"], "uncapped `workload=random` over all of 1 GiB, and of 4 GiB",
        LOADS["sparse"]["what"], MAX_BANDWIDTH >> 30, bl.NO_WP_UNPOPULATED_MASK,
        "%g" % opts.baseline, "%g" % opts.recovery_timeout)


def param_arg(text):
    name, _, value = text.partition("=")
    return (name, int(value, 0))


def add_args(ap):
    ap.add_argument("--bg-load", dest="bg_loads", action="append", choices=sorted(LOADS),
                    help="bgsnap loads (default: all)")
    ap.add_argument("--bg-vmm", dest="bg_vmms", action="append", choices=VMMS,
                    help="bgsnap VMMs (default: all)")
    ap.add_argument("--bg-report-ms", dest="report_ms", type=int, default=100)
    ap.add_argument("--bg-warmup", dest="warmup", type=float, default=60.0,
                    help="most seconds to wait for a steady write rate")
    ap.add_argument("--bg-baseline", dest="baseline", type=float, default=3.0)
    ap.add_argument("--bg-tail", dest="tail", type=float, default=1.0)
    ap.add_argument("--bg-snap-timeout", dest="snap_timeout", type=float, default=120)
    ap.add_argument("--bg-recovery-timeout", dest="recovery_timeout", type=float, default=10)
    ap.add_argument("--bg-rounds", dest="rounds", type=int, default=1,
                    help="snapshots per load and VMM, the VMMs in turn; the tables show "
                         "medians (default 1)")
    ap.add_argument("--bg-param", dest="bg_params", action="append", type=param_arg,
                    metavar="NAME=BYTES", help="extra amber migration parameter")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--plot-dir", default=os.path.join(bl.ROOT, "docs", "perf"))


def command(opts):
    return "tests/bench/run.py --only bgsnap" + (
        " --bg-rounds %d" % opts.rounds if opts.rounds != 1 else "") + "".join(
        " --bg-load %s" % l for l in opts.bg_loads if opts.bg_loads != list(LOADS)) + "".join(
        " --bg-param %s=%d" % kv for kv in sorted(opts.bg_params.items()))


NAME = "bgsnap"


def run(opts, tmp, write_doc=None):
    """The scenario as run.py calls it: bench, print, raw JSON, doc."""
    opts.bg_loads = opts.bg_loads or list(LOADS)
    opts.bg_params = dict(opts.bg_params or ())
    if opts.rounds < 1:
        raise SystemExit("--bg-rounds must be at least 1")
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
