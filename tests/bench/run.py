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

QEMU = shutil.which("qemu-system-x86_64")


def tsc_khz():
    """The host TSC rate in kHz, for QEMU runs (amber passes its own)."""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    return 0


def boot(vmm, mem_mib, smp, append, seconds, tmp):
    """Run the guest for `seconds`; return (time to first report, reports)."""
    serial = os.path.join(tmp, "%s-serial.log" % vmm)
    if vmm == "amber":
        args = [vmmod.AMBER, "-m", str(mem_mib), "-smp", str(smp),
                "-append", append, "-serial", "file:" + serial]
    else:
        args = [QEMU, "-accel", "kvm", "-m", str(mem_mib), "-smp", str(smp),
                "-kernel", vmmod.GUEST_ELF, "-append", append + " tsc_khz=%d" % tsc_khz(),
                "-serial", "file:" + serial, "-display", "none", "-nodefaults",
                "-device", "isa-debug-exit,iobase=0x501,iosize=4"]
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
                if vmm == "qemu" and not QEMU:
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
    ap.add_argument("--only", action="append", help="scenario(s) to run: boot")
    ap.add_argument("--doc", action="store_true", help="update docs/performance.md")
    args = ap.parse_args()
    vmmod.AMBER = os.path.join(os.path.abspath(args.build), "amber")
    vmmod.GUEST_ELF = os.path.join(os.path.abspath(args.build), "guest", "amber-guest.elf")
    tmp = tempfile.mkdtemp(prefix="amber-bench-")
    results = {}
    if not args.only or "boot" in args.only:
        rows = bench_boot(args, tmp)
        results["boot"] = rows
        print(table_boot(rows))
        if args.doc:
            write_doc("boot", table_boot(rows), "make bench")
    out = os.path.join(args.build, "bench")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
