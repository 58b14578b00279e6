#!/usr/bin/env python3
"""Check a RAM dump of amber's built-in guest against the wave invariant.

The dump is raw guest-physical memory from address 0 (what QMP `pmemsave`
writes).  docs/guest.md describes the layout this reads:

  0x101000  header  {u64 magic "AMBRGST1", u32 version, u32 ncpus,
                     u32 workload, u32 page_size, u64 ws_pages,
                     u64 part_pages, u64 tsc_khz, u64 seed, u64 ram_bytes}
  0x101100 + 256*v  record of vCPU v {u64 magic "AMBRVCPU", u32 pos,
                     u32 pass, u32 vcpu, u32 nseg, u64 npages,
                     u64 reserved[4], {u64 addr, u64 npages} seg[12]}

Invariant, per vCPU partition (pages numbered 0..npages-1 across its
segments), with the record's pass P and pos I: pages [0, I) carry stamp
(P, v, index) in their first and last 8 bytes, pages (I, npages) carry
(P-1, v, index) (zero when P = 1), and page I either, each end on its own.
stamp(pass, vcpu, index) = pass << 32 | (vcpu & 0xff) << 24 | index.

Exit status: 0 every partition holds, 1 a violation, 2 the dump cannot be
checked (no guest header, wrong workload, truncated, bad arguments).
"""
import argparse
import json
import mmap
import os
import struct
import sys

RECORDS_ADDR = 0x101000
HEADER_MAGIC = 0x3154534752424d41       # "AMBRGST1"
RECORD_MAGIC = 0x5550435652424d41       # "AMBRVCPU"
LAYOUT_VERSION = 1
RECORD_SIZE = 256
MAX_SEGS = 12
MAX_VCPUS = 32
PAGE = 4096
WORKLOADS = {1: "wave", 2: "random", 3: "idle"}
MAX_REPORTED = 10                       # violations listed per vCPU

HEADER = struct.Struct("<QIIIIQQQQQ")
RECORD = struct.Struct("<QIIIIQ32x")
SEG = struct.Struct("<QQ")
U64 = struct.Struct("<Q")


class Unusable(Exception):
    """The dump cannot be checked at all."""


def stamp(pass_, vcpu, index):
    if pass_ == 0:
        return 0
    return (pass_ << 32) | ((vcpu & 0xff) << 24) | (index & 0xffffff)


def read_header(mem, limit):
    if limit < RECORDS_ADDR + RECORD_SIZE * (1 + MAX_VCPUS):
        raise Unusable("dump is %d bytes, too short to hold the guest records at 0x%x"
                       % (limit, RECORDS_ADDR))
    (magic, version, ncpus, workload, page_size, ws_pages, part_pages,
     tsc_khz, seed, ram_bytes) = HEADER.unpack_from(mem, RECORDS_ADDR)
    if magic != HEADER_MAGIC:
        raise Unusable("no built-in guest header at 0x%x (guest not started yet, "
                       "or not amber's built-in guest)" % RECORDS_ADDR)
    if version != LAYOUT_VERSION:
        raise Unusable("guest layout version %d, this checker knows %d"
                       % (version, LAYOUT_VERSION))
    if not 1 <= ncpus <= MAX_VCPUS or page_size != PAGE:
        raise Unusable("implausible header: ncpus=%d page_size=%d" % (ncpus, page_size))
    return {"ncpus": ncpus, "workload": WORKLOADS.get(workload, str(workload)),
            "ws_pages": ws_pages, "part_pages": part_pages, "tsc_khz": tsc_khz,
            "seed": seed, "ram_bytes": ram_bytes}


def read_record(mem, v, limit):
    off = RECORDS_ADDR + RECORD_SIZE * (1 + v)
    magic, pos, pass_, vcpu, nseg, npages = RECORD.unpack_from(mem, off)
    if magic != RECORD_MAGIC:
        raise Unusable("vCPU %d has no published record at 0x%x (the guest is still "
                       "clearing its partition, or never got that far)" % (v, off))
    if vcpu != v or not 1 <= nseg <= MAX_SEGS:
        raise Unusable("vCPU %d: implausible record (vcpu=%d nseg=%d)" % (v, vcpu, nseg))
    segs = [SEG.unpack_from(mem, off + 64 + 16 * i) for i in range(nseg)]
    if sum(n for _, n in segs) != npages:
        raise Unusable("vCPU %d: segments do not add up to %d pages" % (v, npages))
    for addr, n in segs:
        if addr % PAGE or addr + n * PAGE > limit:
            raise Unusable("vCPU %d: partition range 0x%x+%d pages lies outside "
                           "the dump (%d bytes)" % (v, addr, n, limit))
    return {"pos": pos, "pass": pass_, "npages": npages, "segs": segs}


def check_partition(mem, v, rec):
    """Returns (violation count, first few violations)."""
    p, pos = rec["pass"], rec["pos"]
    bad, first = 0, []
    if p < 1 or pos >= rec["npages"]:
        return 1, [{"error": "record out of range: pass=%d pos=%d npages=%d"
                    % (p, pos, rec["npages"])}]
    index = 0
    for addr, n in rec["segs"]:
        for i in range(n):
            base = addr + i * PAGE
            head = U64.unpack_from(mem, base)[0]
            tail = U64.unpack_from(mem, base + PAGE - 8)[0]
            new, old = stamp(p, v, index), stamp(p - 1, v, index)
            if index < pos:
                ok = head == new and tail == new
                expected = new
            elif index > pos:
                ok = head == old and tail == old
                expected = old
            else:
                ok = head in (new, old) and tail in (new, old)
                expected = new
            if not ok:
                bad += 1
                if len(first) < MAX_REPORTED:
                    first.append({"index": index, "addr": base, "head": head,
                                  "tail": tail, "expected": expected})
            index += 1
    return bad, first


def describe(s):
    if s == 0:
        return "0"
    return "0x%016x(pass=%d vcpu=%d index=%d)" % (s, s >> 32, (s >> 24) & 0xff,
                                                   s & 0xffffff)


def check(path, ram_mib):
    size = os.path.getsize(path)
    limit = size
    if ram_mib is not None:
        if size < ram_mib << 20:
            raise Unusable("dump is %d bytes, shorter than --ram-mib %d (truncated?)"
                           % (size, ram_mib))
        limit = ram_mib << 20
    if size == 0:
        raise Unusable("dump is empty")
    with open(path, "rb") as f:
        mem = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            hdr = read_header(mem, limit)
            if hdr["workload"] != "wave":
                raise Unusable("the guest ran workload=%s; the invariant holds for wave only"
                               % hdr["workload"])
            result = dict(hdr, vcpus=[])
            for v in range(hdr["ncpus"]):
                rec = read_record(mem, v, limit)
                bad, first = check_partition(mem, v, rec)
                result["vcpus"].append({"vcpu": v, "pass": rec["pass"], "pos": rec["pos"],
                                        "npages": rec["npages"], "ok": bad == 0,
                                        "violations": bad, "first_violations": first})
        finally:
            mem.close()
    result["ok"] = all(c["ok"] for c in result["vcpus"])
    return result


def print_text(result):
    for c in result["vcpus"]:
        status = "ok" if c["ok"] else "violations=%d" % c["violations"]
        print("vcpu=%d pass=%d pos=%d pages=%d %s"
              % (c["vcpu"], c["pass"], c["pos"], c["npages"], status))
        for b in c["first_violations"]:
            if "error" in b:
                print("  " + b["error"])
                continue
            print("  page %d at 0x%x: head %s tail %s, expected %s"
                  % (b["index"], b["addr"], describe(b["head"]), describe(b["tail"]),
                     describe(b["expected"])))
    print("wave invariant %s" % ("holds" if result["ok"] else "VIOLATED"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump", help="raw guest-physical memory from address 0")
    ap.add_argument("--ram-mib", type=int, default=None,
                    help="guest RAM size: the dump must cover it; bytes after it are ignored")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        if args.ram_mib is not None and args.ram_mib <= 0:
            raise Unusable("--ram-mib must be positive")
        result = check(args.dump, args.ram_mib)
    except (Unusable, OSError) as e:
        if args.json:
            print(json.dumps({"ok": False, "error": str(e)}))
        else:
            print("wavecheck: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_text(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
