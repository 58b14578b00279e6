"""The host itself, cold and warm: what memory and file writes cost here.

Every other figure depends on it.  On a host that hands memory unused for a
few seconds back to its hypervisor, the first touch of memory after an idle
spell and a new file written through the page cache cost several times what
they cost right after the same work (docs/performance.md, the cold-host
notes).  tests/tools/hostprobe measures, in one run: the first touch of
anonymous memory (seconds per GiB), a new file written in 1 MiB writes
through the page cache (GiB/s of the writes, and the fdatasync after) and
with O_DIRECT; each cold (after IDLE seconds in which the memory just freed
sat unused) and warm (right after the same work).  No QEMU column: this is
the host, not a VMM.
"""
import json
import os
import subprocess
import sys

import benchlib as bl

NAME = "host"
IDLE_S = 10


def probe_path(opts):
    return os.path.join(opts.build, "tests", "tools", "hostprobe")


def bench(opts, tmp):
    rows = []
    for mib in opts.host_mib:
        for _ in range(opts.host_rounds):
            p = subprocess.run([probe_path(opts), "--mib", str(mib), "--idle", str(IDLE_S), tmp],
                               capture_output=True, text=True, timeout=600)
            if p.returncode:
                raise RuntimeError("hostprobe: %s" % p.stderr.strip())
            row = dict(json.loads(p.stdout), scenario=NAME)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def table(rows, opts):
    lines = ["| size | first touch cold / warm (s per GiB) | page-cache write cold / warm "
             "(GiB/s) | its fdatasync cold / warm (s) | O_DIRECT write (GiB/s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append("| %d MiB | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.2f |" % (
            r["mib"], r["touch_cold_s_per_gib"], r["touch_warm_s_per_gib"],
            r["cache_write_cold_gib_s"], r["cache_write_warm_gib_s"],
            r["cache_sync_cold_s"], r["cache_sync_warm_s"], r["direct_write_gib_s"]))
    lines.append("")
    lines.append(
        "`tests/tools/hostprobe`: the first touch maps anonymous memory and writes one byte "
        "per 4 KiB page; the file writes go to a new file in the benchmark's directory on "
        "the root file system, 1 MiB at a time (the rate is of the writes, what a saver "
        "waits for; the fdatasync after them is given apart). cold: after %d s in which the "
        "memory just freed and the file system sat unused; warm: right after the same "
        "work. The gap between the two is what a benchmark run only warm would hide." % IDLE_S)
    return "\n".join(lines) + "\n"


def command(opts):
    return "tests/bench/run.py --only host" + "".join(
        " --host-mib %d" % m for m in opts.host_mib) + \
        (" --host-rounds %d" % opts.host_rounds if opts.host_rounds != 2 else "")


def add_args(ap):
    ap.add_argument("--host-mib", dest="host_mib", type=int, action="append",
                    help="hostprobe sizes in MiB (default 1024)")
    ap.add_argument("--host-rounds", dest="host_rounds", type=int, default=2,
                    help="hostprobe runs per size (default 2)")


def run(opts, tmp, write_doc=None):
    opts.host_mib = opts.host_mib or [1024]
    if not os.path.exists(probe_path(opts)):
        raise SystemExit("%s is not built" % probe_path(opts))
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
