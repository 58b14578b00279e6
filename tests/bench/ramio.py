"""RAM to a file and back: the plain stream against mapped-ram, no guest needed.

tests/tools/ramio saves one anonymous block (90 % of its pages data) the way a
stopped guest is saved, as a plain stream and as mapped-ram with 1, 2 and 4
writing threads, and loads each image into new memory: eagerly, lazily (the
moment vCPUs could run, then every page placed) and zero-copy (mapped, then
every page touched once).  Every load is compared with the source.  Two host
states: warm (the image still in the page cache, memory just freed by the
previous step) and cold (the image dropped from the page cache before each
load, and IDLE seconds of idleness before each step so that memory the host
handed back to its hypervisor must come back on first touch).
"""
import json
import os
import subprocess
import sys

import benchlib as bl

NAME = "ramio"
THREADS = (1, 2, 4)
IDLE_S = 10


def ramio_path(opts):
    return os.path.join(opts.build, "tests", "tools", "ramio")


def measure(opts, tmp, mib, cold):
    cmd = [ramio_path(opts), "--mib", str(mib)]
    for t in THREADS:
        cmd += ["--threads", str(t)]
    if cold:
        cmd += ["--cold-cache", "--idle", str(IDLE_S)]
    p = subprocess.run(cmd + [tmp], capture_output=True, text=True, timeout=3600)
    if p.returncode:
        raise RuntimeError("ramio: %s" % p.stderr.strip())
    return json.loads(p.stdout)


def bench(opts, tmp):
    rows = []
    for mib in opts.ramio_mib:
        for cold in (False, True):
            row = dict(measure(opts, tmp, mib, cold), scenario=NAME,
                       state="cold" if cold else "warm")
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def rate(row, seconds):
    return row["data_mib"] / seconds if seconds else 0


def table(rows, opts):
    head = ("| RAM (data) | host | plain save / load MiB/s | "
            + " | ".join("mapped-ram %d thr. save / load MiB/s" % t for t in THREADS)
            + " | best mapped load / plain load | lazy: ready (ms) / all in (s) "
            "| zero-copy: ready (ms) / all touched (s) |")
    lines = [head, "|" + "---|" * (6 + len(THREADS))]
    for r in rows:
        plain = r["plain"]
        cells = ["%d MiB (%.0f)" % (r["mib"], r["data_mib"]), r["state"],
                 "%.0f / %.0f" % (rate(r, plain["save_s"]), rate(r, plain["load_s"]))]
        best = 0
        for m in r["mapped"]:
            cells.append("%.0f / %.0f" % (rate(r, m["save_s"]), rate(r, m["load_s"])))
            best = max(best, rate(r, m["load_s"]))
        cells.append("%.2fx" % (best / rate(r, plain["load_s"])))
        cells.append("%.2f / %.2f" % (r["lazy"]["ready_s"] * 1000, r["lazy"]["complete_s"]))
        cells.append("%.2f / %.2f" % (r["zero_copy"]["ready_s"] * 1000,
                                      r["zero_copy"]["touched_s"]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "`tests/tools/ramio` through amber's own saver, loader, mapped-ram writer and "
        "readers, lazy restore and zero-copy map, on one anonymous block (90 %% of its "
        "pages data, spread evenly; the rest never touched), into a file on the root file "
        "system (ext4). MiB/s are data MiB over the time of the step: a save until the "
        "stream is closed, starting with no dirty page cache (synced before, and after: "
        "not counted); a load from opening the image until every page "
        "is in new memory (its first touch included). Lazy ready: from opening the image "
        "until the guest could run; all in: until every page is placed. Zero-copy ready: "
        "until the image is mapped; all touched: until one read of every page has faulted "
        "it in from the page cache. warm: each load right after the save, the image in "
        "the page cache; cold: the image synced and dropped from the page cache before "
        "each load, and %d s idle before each step. No QEMU column: QEMU saves and "
        "loads RAM only with a machine around it, which the saverestore section "
        "measures for both; here the ratio column compares amber's two layouts." % IDLE_S)
    return "\n".join(lines) + "\n"


def command(opts):
    return "tests/bench/run.py --only ramio" + "".join(
        " --ramio-mib %d" % m for m in opts.ramio_mib)


def add_args(ap):
    ap.add_argument("--ramio-mib", dest="ramio_mib", type=int, action="append",
                    help="ramio RAM sizes in MiB (default 1024 and 4096)")


def run(opts, tmp, write_doc=None):
    opts.ramio_mib = opts.ramio_mib or [1024, 4096]
    if not os.path.exists(ramio_path(opts)):
        raise SystemExit("%s is not built" % ramio_path(opts))
    return bl.run_scenario(opts, tmp, sys.modules[__name__], write_doc)
