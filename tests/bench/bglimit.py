"""Background snapshot under a bandwidth limit: what `max-bandwidth` costs the guest.

The bgsnap busy load, snapshotted by amber and QEMU 7.2 in turn with
`max-bandwidth` LIMIT (QEMU's own default for migrations is 32 MiB/s).  The limit
is for the stream; a guest that writes while its RAM is write-protected should not
be held to it.  amber holds only its scan of RAM to the limit and saves the copies
its write faults made at once (docs/devel/migration.md); QEMU serves the pages its
guest waits for ahead of the limit.
"""
import sys

import benchlib as bl
import bgsnap

NAME = "bglimit"
LOAD = "busy"
LIMIT = 32 << 20
VMMS = ("amber", "qemu")


def bench(opts, tmp):
    row = {"scenario": NAME, "load": LOAD, "limit": LIMIT, "rounds": opts.bl_rounds}
    results = {vmm: [] for vmm in VMMS}
    for rnd in range(1, opts.bl_rounds + 1):
        for vmm in VMMS:
            results[vmm].append(bgsnap.measure(LOAD, vmm, rnd, tmp, opts, LIMIT))
    for vmm in VMMS:
        row[vmm] = bgsnap.combine(results[vmm])
    return [row]


def table(rows, opts):
    lines = [
        "| load | VMM | max-bandwidth | retained | guest time lost (s) "
        "| stall p50 / p99 / max (us) | snapshot (s) | stream MiB/s (image / snapshot) |",
        "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for vmm in VMMS:
            res = row.get(vmm) or {}
            if "figures" not in res:
                lines.append("| %s | %s | | failed: %s | | | | |" % (
                    row["load"], vmm, res.get("error", "not run")))
                continue
            f = res["figures"]
            snap_s = f["snapshot_ms"] / 1000 if f["snapshot_ms"] else None
            lines.append("| %s | %s | %d MiB/s | %s %% | %s%s | %s / %s / %s%s | %s | %s |" % (
                row["load"], "amber" if vmm == "amber" else "QEMU 7.2", row["limit"] >> 20,
                bgsnap.fmt(f["retained_pct"], "%.0f"), bgsnap.fmt(f["time_lost_s"], "%.3f"),
                bgsnap.spread(res, "time_lost_s", "%.3f"),
                bgsnap.fmt(f["stall_p50_us"], "%d"), bgsnap.fmt(f["stall_p99_us"], "%d"),
                bgsnap.fmt(f["stall_max_us"], "%d"), bgsnap.spread(res, "stall_max_us", "%d"),
                bgsnap.fmt(snap_s, "%.1f"),
                bgsnap.fmt(f["image_bytes"] / 2**20 / snap_s if snap_s else None, "%.0f")))
    lines.append("")
    lines.append(
        "The busy load of the bgsnap section (`workload=random rate=50000` over 1 GiB, 2 "
        "vCPUs), `migrate fd:` to a file with `max-bandwidth` %d MiB/s for both VMMs; %d "
        "rounds, the VMMs in turn, medians with the range of guest time lost and max "
        "stall in brackets; figures as defined there. The stream rate is the image size "
        "over the snapshot time." % (LIMIT >> 20, opts.bl_rounds))
    return "\n".join(lines) + "\n"


def command(opts):
    return "tests/bench/run.py --only bglimit" + (
        " --bl-rounds %d" % opts.bl_rounds if opts.bl_rounds != 1 else "")


def add_args(ap):
    ap.add_argument("--bl-rounds", dest="bl_rounds", type=int, default=1,
                    help="bglimit snapshots per VMM, the VMMs in turn")


def run(opts, tmp, write_doc=None):
    if opts.bl_rounds < 1:
        raise SystemExit("--bl-rounds must be at least 1")
    opts.bg_params = dict(opts.bg_params or ())
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
