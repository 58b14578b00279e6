#!/usr/bin/env python3
"""Two runs of the bench side by side: amber's figures before and after a
change, each beside the same run's QEMU figures, so that drift of the host
between the runs shows (QEMU did not change) and is not taken for an effect
of the change.

    tests/bench/compare.py BEFORE/results.json AFTER/results.json

Reads the saverestore, bgsnap and precopy scenarios of both (whatever they
hold) and prints markdown tables.  bgsnap figures are the medians over the
rounds with their range.
"""
import argparse
import json
import statistics
import sys


def fmt(v, digits=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return "%.*f" % (digits, v)
    return str(v)


def num(v):
    """Three significant digits, without an exponent."""
    return "%.0f" % v if abs(v) >= 100 else "%.3g" % v


def spread(rounds, key, scale=1.0):
    """'median (min-max)' of a bgsnap figure over the rounds."""
    vals = [r[key] * scale for r in rounds if r.get(key) is not None]
    if not vals:
        return "-"
    return "%s (%s-%s)" % (num(statistics.median(vals)), num(min(vals)), num(max(vals)))


def pairs(before, after, key, first_col):
    """Print the table's head; yield (key, before row, after row) for keys in both."""
    print("| %s | figure | amber before | amber after | QEMU 7.2 before | QEMU 7.2 after |"
          % first_col)
    print("|---|---|---|---|---|---|")
    b = {r[key]: r for r in before}
    a = {r[key]: r for r in after}
    for k in sorted(set(b) & set(a)):
        yield k, b[k], a[k]


def saverestore(before, after):
    for mib, b, a in pairs(before, after, "mem_mib", "RAM"):
        for fig, name, digits in (("save_s", "save (s)", 2),
                                  ("load_s", "start to running (s)", 2),
                                  ("image_per_populated", "image / populated", 4)):
            cells = [fmt(run.get(fig), digits) for run in
                     (b["amber"], a["amber"], b.get("qemu", {}), a.get("qemu", {}))]
            print("| %d MiB | %s | %s |" % (mib, name, " | ".join(cells)))


def bgsnap(before, after):
    figs = (("time_lost_s", "guest time lost (s)", 1.0),
            ("snapshot_ms", "snapshot (ms)", 1.0),
            ("stall_max_us", "guest max stall (ms)", 1e-3),
            ("pause_us", "pause (ms)", 1e-3))
    for load, b, a in pairs(before, after, "load", "load"):
        for fig, name, scale in figs:
            cells = []
            for run in (b, a):
                cells.append(spread(run["amber"]["rounds"], fig, scale))
            for run in (b, a):
                q = run.get("qemu")
                qfig = "pause_ms" if fig == "pause_us" else fig
                qscale = 1.0 if fig == "pause_us" else scale
                cells.append(spread(q["rounds"], qfig, qscale) if q else "-")
            print("| %s | %s | %s |" % (load, name, " | ".join(cells)))


def precopy(before, after):
    for rate, b, a in pairs(before, after, "rate", "dirty rate"):
        for fig, name, scale in (("total_time_ms", "total (ms)", 1),
                                 ("downtime_ms", "downtime (ms)", 1),
                                 ("transferred_bytes", "sent (MiB)", 1 / 2**20),
                                 ("dirty_sync_count", "passes", 1)):
            cells = []
            for run in (b["amber"], a["amber"], b.get("qemu"), a.get("qemu")):
                v = run.get(fig) if run else None
                cells.append(fmt(v * scale if isinstance(v, (int, float)) and scale != 1
                                 else v, 0))
            print("| %d | %s | %s |" % (rate, name, " | ".join(cells)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    args = ap.parse_args()
    try:
        before = json.load(open(args.before))
        after = json.load(open(args.after))
    except (OSError, ValueError) as e:
        sys.exit("compare.py: %s" % e)
    for name, fn in (("saverestore", saverestore), ("bgsnap", bgsnap),
                     ("precopy", precopy)):
        if before.get(name) and after.get(name):
            print("\n%s:\n" % name)
            fn(before[name], after[name])


if __name__ == "__main__":
    main()
