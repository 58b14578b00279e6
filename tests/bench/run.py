#!/usr/bin/env python3
"""amber benchmark harness.

Runs each scenario under amber and, when qemu-system-x86_64 is installed,
under QEMU with the same built-in guest image, side by side in one run (these
machines are noisy: only ratios measured together mean anything).  Results go
to BUILD/bench/results.json; --doc rewrites the matching section of
docs/performance.md with the table and the command that produced it.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "functional"))
import vm as vmmod  # noqa: E402
from qmp import Qmp  # noqa: E402
import benchlib as bl  # noqa: E402
import bglimit  # noqa: E402
import bgsnap  # noqa: E402
import host  # noqa: E402
import postcopy  # noqa: E402
import precopy  # noqa: E402
import ramio  # noqa: E402
import wpfloor  # noqa: E402

def boot(vmm, mem_mib, smp, append, seconds, tmp):
    """Run the guest for `seconds`; return (time to first report, reports)."""
    serial = os.path.join(tmp, "%s-%d-%s-serial.log" % (vmm, smp, append.split()[0]))
    if os.path.exists(serial):
        os.unlink(serial)
    args = bl.vmm_args(vmm, mem_mib, smp, append) + ["-serial", "file:" + serial]
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    try:
        while time.monotonic() - t0 < seconds + 30:
            try:
                text = open(serial, errors="replace").read()
            except FileNotFoundError:
                text = ""
            reps = vmmod.parse_reports(text)
            if reps and first is None:
                first = time.monotonic() - t0
            if first is not None and time.monotonic() - t0 >= first + seconds:
                break
            if p.poll() is not None:
                raise RuntimeError("%s exited: %s" % (vmm, p.stderr.read().decode()[-500:]))
            time.sleep(0.02)
    finally:
        p.kill()
        p.wait()
    return first, vmmod.parse_reports(open(serial, errors="replace").read())


def steady_rate(reports, smp):
    """Median writes/s per vCPU over the reports after the first round."""
    per = {}
    for r in reports:
        per.setdefault(r["vcpu"], []).append(r["writes"])
    return [statistics.median(v[1:] or v) for _, v in sorted(per.items())]


def bench_boot(args, tmp):
    rows = []
    for workload in ("wave", "random"):
        for smp in (1, 2):
            append = "workload=%s report=250" % workload
            row = {"scenario": "boot", "workload": workload, "smp": smp, "mem_mib": 512}
            for vmm in ("amber", "qemu"):
                if vmm == "qemu" and not bl.QEMU:
                    continue
                first, reps = boot(vmm, 512, smp, append, args.seconds, tmp)
                row[vmm] = {"first_report_s": round(first, 3),
                            "writes_per_s_per_vcpu": steady_rate(reps, smp)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def table_boot(rows):
    lines = ["| workload | vCPUs | amber first report (s) | QEMU first report (s) "
             "| amber writes/s/vCPU | QEMU writes/s/vCPU | amber/QEMU |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        a, q = r["amber"], r.get("qemu")
        aw = statistics.mean(a["writes_per_s_per_vcpu"])
        qw = statistics.mean(q["writes_per_s_per_vcpu"]) if q else None
        lines.append("| %s | %d | %.2f | %s | %.3g | %s | %s |" % (
            r["workload"], r["smp"], a["first_report_s"],
            "%.2f" % q["first_report_s"] if q else "-", aw,
            "%.3g" % qw if qw else "-", "%.2f" % (aw / qw) if qw else "-"))
    return "\n".join(lines)


# ---- saverestore: migrate to a file, then -incoming from it ----

def start_vm(vmm, mem_mib, smp, append, tmp, tag, extra=()):
    """Start amber or QEMU with a QMP socket; returns (Popen, Qmp, serial path)."""
    serial = os.path.join(tmp, "%s-%s-serial.log" % (vmm, tag))
    sock = os.path.join(tmp, "%s-%s-qmp.sock" % (vmm, tag))
    for p in (serial, sock):
        if os.path.exists(p):
            os.unlink(p)
    args = bl.vmm_args(vmm, mem_mib, smp, append)
    args += ["-serial", "file:" + serial, "-qmp", "unix:%s,server=on,wait=off" % sock]
    p = subprocess.Popen(args + list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        c = Qmp.connect(sock, timeout=120)
        c.negotiate()
    except Exception:
        p.kill()
        raise RuntimeError("%s did not start: %s" % (vmm, p.stderr.read().decode()[-500:]))
    return p, c, serial


def wait_full_pass(p, serial, smp, timeout):
    """Wait until every vCPU has finished a wave pass (its working set is populated)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        done = {}
        for r in vmmod.parse_reports(open(serial, errors="replace").read()):
            if r["pass"] >= 2:
                done[r["vcpu"]] = True
        if len(done) == smp:
            return
        if p.poll() is not None:
            raise RuntimeError("guest exited: %s" % p.stderr.read().decode()[-500:])
        time.sleep(0.05)
    raise RuntimeError("the guest did not complete a pass within %ss" % timeout)


def poll(c, cmd, done, timeout=600, interval=0.01):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = c.ok(cmd)
        if done(r):
            return r
        time.sleep(interval)
    raise RuntimeError("%s: no end within %ss" % (cmd, timeout))


def save_restore(vmm, mem_mib, smp, tmp):
    """One save and one restore; returns the measured figures."""
    img = os.path.join(tmp, "%s.img" % vmm)
    append = "workload=wave report=250 ws_mib=%d" % (mem_mib * 9 // 10)
    p, c, serial = start_vm(vmm, mem_mib, smp, append, tmp, "src")
    try:
        wait_full_pass(p, serial, smp, timeout=300)
        uri = "file:" + img if vmm == "amber" else "exec:cat > '%s'" % img
        # Measure the save itself, not a bandwidth cap.
        c.ok("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        t0 = time.monotonic()
        if vmm == "qemu":
            # QEMU's migrate is live precopy; stopped first, it saves in one
            # pass as amber's non-live migrate does (amber stops the guest itself).
            c.ok("stop")
        c.ok("migrate", {"uri": uri})
        info = poll(c, "query-migrate",
                    lambda r: r.get("status") in ("completed", "failed", "cancelled"))
        save_s = time.monotonic() - t0
        if info["status"] != "completed":
            raise RuntimeError("%s: migration %s" % (vmm, info))
    finally:
        p.kill()
        p.wait()
    populated = info["ram"]["normal-bytes"]
    image = os.path.getsize(img)
    uri = "file:" + img if vmm == "amber" else "exec:cat '%s'" % img
    t0 = time.monotonic()
    p, c, serial = start_vm(vmm, mem_mib, smp, append, tmp, "dst", ["-incoming", uri])
    try:
        st = poll(c, "query-status", lambda r: r["status"] in ("running", "paused"),
                  interval=0.005)
        if st["status"] == "paused":
            # QEMU restores the source's run state: stopped before the save.
            c.ok("cont")
            poll(c, "query-status", lambda r: r["status"] == "running", interval=0.005)
        load_s = time.monotonic() - t0
        if vmm == "amber":
            # What the loader saw is what the file holds: one page each.
            r = subprocess.run([os.path.join(os.path.dirname(vmmod.AMBER), "tools",
                                             "amber-img"), "verify", img],
                               capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError("amber-img verify: %s" % r.stderr)
    finally:
        p.kill()
        p.wait()
        os.unlink(img)
    mib = populated / (1 << 20)
    return {"populated_bytes": populated, "image_bytes": image,
            "save_s": round(save_s, 3), "save_mib_s": round(mib / save_s, 1),
            "total_time_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
            "load_s": round(load_s, 3), "load_mib_s": round(mib / load_s, 1),
            "image_per_populated": round(image / populated, 4) if populated else None}


def bench_saverestore(args, tmp):
    rows = []
    for mem_mib in args.sr_mib:
        row = {"scenario": "saverestore", "mem_mib": mem_mib, "smp": 2}
        for vmm in ("amber", "qemu"):
            if vmm == "qemu" and not bl.QEMU:
                continue
            row[vmm] = save_restore(vmm, mem_mib, 2, tmp)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def table_saverestore(rows):
    lines = ["| RAM | VMM | populated MiB | save (s) | save MiB/s | image / populated "
             "| start to running (s) | load MiB/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for vmm in ("amber", "qemu"):
            m = r.get(vmm)
            if not m:
                continue
            lines.append("| %d MiB | %s | %.0f | %.2f | %.0f | %.4f | %.2f | %.0f |" % (
                r["mem_mib"], "amber" if vmm == "amber" else "QEMU 7.2",
                m["populated_bytes"] / (1 << 20), m["save_s"], m["save_mib_s"],
                m["image_per_populated"], m["load_s"], m["load_mib_s"]))
    lines.append("")
    lines.append("Guest: the built-in guest, 2 vCPUs, `workload=wave` over 90 % of RAM, "
                 "saved after every vCPU finished a pass. Populated = bytes saved as "
                 "whole pages (`normal-bytes`). Save: `migrate` to completion with "
                 "max-bandwidth unlimited (amber: `file:`, from the running guest; QEMU: "
                 "`stop`, then `exec:cat > FILE`, as QEMU 7.2 has no `file:`); load: "
                 "process start with `-incoming` (`file:` / `exec:cat FILE`) until "
                 "`query-status` says running (QEMU: `cont` once loaded, since it keeps "
                 "the stopped state of its source).")
    return "\n".join(lines)


def write_doc(section, body, command):
    path = os.path.join(ROOT, "docs", "performance.md")
    text = open(path).read() if os.path.exists(path) else "# Performance\n"
    start, end = "<!-- bench:%s -->" % section, "<!-- /bench:%s -->" % section
    block = "%s\nMeasured by `%s` on %s.\n\n%s\n%s" % (
        start, command, time.strftime("%Y-%m-%d"), body, end)
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    open(path, "w").write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", action="append",
                    help="scenario(s) to run: host, boot, saverestore, bgsnap, bglimit, "
                         "wpfloor, precopy, postcopy, ramio")
    ap.add_argument("--sr-mib", type=int, action="append",
                    help="saverestore guest sizes in MiB (default 1024 and 4096)")
    ap.add_argument("--doc", action="store_true", help="update docs/performance.md")
    bgsnap.add_args(ap)
    precopy.add_args(ap)
    postcopy.add_args(ap)
    wpfloor.add_args(ap)
    bglimit.add_args(ap)
    ramio.add_args(ap)
    host.add_args(ap)
    args = ap.parse_args()
    bl.set_build(args.build)
    tmp = tempfile.mkdtemp(prefix="amber-bench-")
    try:
        run_all(args, tmp)
    finally:
        # Also on an error or Ctrl-C: sockets, serial logs and images go.
        shutil.rmtree(tmp, ignore_errors=True)


def run_all(args, tmp):
    results = {}
    # The host first: the state every later figure was taken in.
    if not args.only or host.NAME in args.only:
        results[host.NAME] = host.run(args, tmp, write_doc if args.doc else None)
    if not args.only or "boot" in args.only:
        rows = bench_boot(args, tmp)
        results["boot"] = rows
        print(table_boot(rows))
        if args.doc:
            write_doc("boot", table_boot(rows), "make bench")
    if not args.only or "saverestore" in args.only:
        args.sr_mib = args.sr_mib or [1024, 4096]
        rows = bench_saverestore(args, tmp)
        results["saverestore"] = rows
        print(table_saverestore(rows))
        if args.doc:
            cmd = "tests/bench/run.py --only saverestore" + "".join(
                " --sr-mib %d" % m for m in args.sr_mib)
            write_doc("saverestore", table_saverestore(rows), cmd)
    for mod in (bgsnap, bglimit, wpfloor, precopy, postcopy, ramio):
        if not args.only or mod.NAME in args.only:
            results[mod.NAME] = mod.run(args, tmp, write_doc if args.doc else None)
    out = os.path.join(args.build, "bench")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
