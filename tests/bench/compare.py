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


def index(rows, *keys):
    return {tuple(r[k] for k in keys): r for r in rows}


def saverestore(before, after):
    print("| RAM | figure | amber before | amber after | QEMU 7.2 before | QEMU 7.2 after |")
    print("|---|---|---|---|---|---|")
    b, a = index(before, "mem_mib"), index(after, "mem_mib")
    for key in sorted(set(b) & set(a)):
        for fig, name, digits in (("save_s", "save (s)", 2),
                                  ("load_s", "start to running (s)", 2),
                                  ("image_per_populated", "image / populated", 4)):
            cells = [fmt(run.get(fig), digits) for run in
                     (b[key]["amber"], a[key]["amber"], b[key].get("qemu", {}),
                      a[key].get("qemu", {}))]
            print("| %d MiB | %s | %s |" % (key[0], name, " | ".join(cells)))


def bgsnap(before, after):
    print("| load | figure | amber before | amber after | QEMU 7.2 before | QEMU 7.2 after |")
    print("|---|---|---|---|---|---|")
    b, a = index(before, "load"), index(after, "load")
    figs = (("time_lost_s", "guest time lost (s)", 1.0),
            ("snapshot_ms", "snapshot (ms)", 1.0),
            ("stall_max_us", "guest max stall (ms)", 1e-3),
            ("pause_us", "pause (ms)", 1e-3))
    for key in sorted(set(b) & set(a)):
        for fig, name, scale in figs:
            cells = []
            for run in (b[key], a[key]):
                cells.append(spread(run["amber"]["rounds"], fig, scale))
            for run in (b[key], a[key]):
                q = run.get("qemu")
                qfig = "pause_ms" if fig == "pause_us" else fig
                qscale = 1.0 if fig == "pause_us" else scale
                cells.append(spread(q["rounds"], qfig, qscale) if q else "-")
            print("| %s | %s | %s |" % (key[0], name, " | ".join(cells)))


def precopy(before, after):
    print("| dirty rate | figure | amber before | amber after | QEMU 7.2 before | QEMU 7.2 after |")
    print("|---|---|---|---|---|---|")
    b, a = index(before, "rate"), index(after, "rate")
    for key in sorted(set(b) & set(a)):
        for fig, name, scale in (("total_time_ms", "total (ms)", 1),
                                 ("downtime_ms", "downtime (ms)", 1),
                                 ("transferred_bytes", "sent (MiB)", 1 / 2**20),
                                 ("dirty_sync_count", "passes", 1)):
            cells = []
            for run in (b[key]["amber"], a[key]["amber"],
                        b[key].get("qemu"), a[key].get("qemu")):
                v = run.get(fig) if run else None
                cells.append(fmt(v * scale if isinstance(v, (int, float)) and scale != 1
                                 else v, 0))
            print("| %d | %s | %s |" % (key[0], name, " | ".join(cells)))


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
