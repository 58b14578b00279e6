"""amber-img on mapped-ram images (QEMU 9.0's layout) and on plain ones.

No guest is needed: tests/tools/mkimage saves synthetic RAM (two blocks,
with pages never touched, pages cleared again and pages of data) with the
real saving code, plainly or with mapped-ram from 1 or 4 writing threads,
and dumps each block.  `info --json` must count what the dumps hold,
`verify` must pass, and `extract-ram` must give the dumps back byte for
byte.  Damaged mapped-ram images (header fields, a bitmap bit past the last
page, a file cut inside the pages, a page record, an unknown capability)
must be refused with one line and exit status 1, by every command.
"""
import json
import os
import shutil
import struct
import subprocess

import pytest

from vm import no_sanitizer_report

BUILD = os.path.abspath(os.environ.get(
    "AMBER_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build")))
AMBER_IMG = os.path.join(BUILD, "tools", "amber-img")
MKIMAGE = os.path.join(BUILD, "tests", "tools", "mkimage")

PAGE = 4096
MIB = 1 << 20
MAIN = 8 * MIB
ROM = MIB
# 259 pages: the last word of its bitmap has bits no page owns.
ODD_ROM = MIB + 3 * PAGE
HEADER = struct.Struct(">IQQQ")     # version, page size, bitmap offset, pages offset


# ---- helpers ----

def run(prog, *args, check=True):
    p = subprocess.run([prog] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=300)
    no_sanitizer_report(p.stderr)
    if check:
        assert p.returncode == 0, "%s %s: %s" % (os.path.basename(prog),
                                                 " ".join(map(str, args)), p.stderr)
    return p


def mkimage(d, mapped, threads=1, rom=ROM, extra=()):
    """An image in d and the dumps of its blocks; returns (image, {name: bytes})."""
    img = os.path.join(d, "vm.img")
    dumps = os.path.join(d, "dumps")
    args = (["--mapped"] if mapped else []) + ["--threads", threads, "--rom-size", rom]
    args += list(extra)
    run(MKIMAGE, *args, img, dumps)
    blocks = {}
    for name in ("pc.ram", "pc.rom"):
        with open(os.path.join(dumps, name + ".raw"), "rb") as f:
            blocks[name] = f.read()
    assert len(blocks["pc.ram"]) == MAIN and len(blocks["pc.rom"]) == rom
    return img, blocks


def data_pages(buf):
    zero = bytes(PAGE)
    return sum(buf[i:i + PAGE] != zero for i in range(0, len(buf), PAGE))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def block_header(data, name):
    """The mapped-ram header after block name's length in the block list, and its offset."""
    at = data.find(b"%c%s" % (len(name), name.encode()))
    assert at >= 0, name
    at += 1 + len(name) + 8
    return at, HEADER.unpack_from(data, at)


def info(img):
    return json.loads(run(AMBER_IMG, "info", "--json", img).stdout)


@pytest.fixture(scope="session")
def tools():
    for prog in (AMBER_IMG, MKIMAGE):
        if not os.access(prog, os.X_OK):
            pytest.fail("%s is not built (ninja -C %s)" % (prog, BUILD))


# ---- good images ----

@pytest.mark.parametrize("mapped,threads,rom", [
    (False, 1, ROM), (True, 1, ROM), (True, 4, ROM), (False, 1, ODD_ROM), (True, 4, ODD_ROM),
], ids=["plain", "mapped-1", "mapped-4", "plain-odd", "mapped-4-odd"])
def test_image(tools, tmp_path, mapped, threads, rom):
    img, dumps = mkimage(tmp_path, mapped, threads, rom)
    data = read(img)
    assert run(AMBER_IMG, "verify", img).stdout == "OK\n"

    desc = info(img)
    blocks = desc["ram"]["blocks"]
    assert [(b["name"], b["size"]) for b in blocks] == [("pc.ram", MAIN), ("pc.rom", rom)]
    assert desc["ram"]["total"] == MAIN + rom
    assert desc["vmdesc"]["devices"] == []
    for b in blocks:
        npages = b["size"] // PAGE
        normal = data_pages(dumps[b["name"]])
        assert 0 < normal < npages
        assert b["pages"]["normal"] == normal, b
        assert b["pages"]["zero"] + b["pages"]["absent"] == npages - normal, b
    text = run(AMBER_IMG, "info", img).stdout
    if not mapped:
        assert "capabilities" not in desc
        assert all("mapped" not in b for b in blocks)
        assert "capabilities:" not in text
    else:
        assert desc["capabilities"] == ["mapped-ram"]
        assert "capabilities: mapped-ram" in text
        for b in blocks:
            assert b["pages"]["absent"] == 0, b
            at, (version, page_size, bitmap_offset, pages_offset) = block_header(data, b["name"])
            assert (version, page_size) == (1, PAGE)
            assert b["mapped"] == {"bitmap_offset": bitmap_offset, "pages_offset": pages_offset}
            assert bitmap_offset == at + HEADER.size
            assert pages_offset % MIB == 0
            # The bitmap marks exactly the pages of data, each at its place.
            npages = b["size"] // PAGE
            words = data[bitmap_offset:bitmap_offset + (npages + 63) // 64 * 8]
            bits = int.from_bytes(words, "little")
            assert bin(bits).count("1") == b["pages"]["normal"]
            dump = dumps[b["name"]]
            for p in (1, 2, npages - 1):
                present = bool(bits >> p & 1)
                assert present == (dump[p * PAGE:(p + 1) * PAGE] != bytes(PAGE)), p
                if present:
                    assert data[pages_offset + p * PAGE:pages_offset + (p + 1) * PAGE] == \
                        dump[p * PAGE:(p + 1) * PAGE]

    out = tmp_path / "extract"
    run(AMBER_IMG, "extract-ram", img, out)
    for name, want in dumps.items():
        assert read(out / name) == want, name
    phys = read(out / "physmem.raw")
    assert len(phys) == MAIN + rom
    assert phys == dumps["pc.ram"] + dumps["pc.rom"]


def sparse_files_work(d):
    """Whether d's file system leaves an unwritten 4 KiB page unallocated."""
    p = os.path.join(d, "sparse-probe")
    with open(p, "wb") as f:
        f.truncate(4 * MIB)
        f.seek(2 * MIB)
        f.write(b"x" * PAGE)
    allocated = os.stat(p).st_blocks * 512
    os.unlink(p)
    return allocated <= 64 * 1024


def test_zero_pages_are_holes(tools, tmp_path):
    """A mapped-ram image allocates its data pages, not the RAM's size."""
    if not sparse_files_work(str(tmp_path)):
        pytest.skip("the file system of %s does not keep holes page by page" % tmp_path)
    img, dumps = mkimage(tmp_path, True, threads=4)
    normal = sum(data_pages(d) for d in dumps.values())
    allocated = os.stat(img).st_blocks * 512
    assert os.path.getsize(img) > MAIN + ROM
    assert allocated < MAIN + ROM
    assert allocated < normal * PAGE + MIB, (allocated, normal)


# ---- damaged mapped-ram images ----

@pytest.fixture(scope="module")
def good(tools, tmp_path_factory):
    """A mapped-ram image whose pc.rom has 259 pages, and its description."""
    d = tmp_path_factory.mktemp("good")
    img, _ = mkimage(str(d), True, threads=2, rom=ODD_ROM)
    return read(img), info(img)


def patch_header(data, name, field, value):
    at, hdr = block_header(data, name)
    fields = list(hdr)
    fields[field] = value
    return data[:at] + HEADER.pack(*fields) + data[at + HEADER.size:]


def pages_offset(desc, block):
    return desc["ram"]["blocks"][block]["mapped"]["pages_offset"]


def set_bit_past_end(data, desc):
    rom = desc["ram"]["blocks"][1]
    npages = rom["size"] // PAGE
    assert npages % 64, "pc.rom must leave bits of its bitmap's last word unowned"
    bit = npages + 41
    buf = bytearray(data)
    buf[rom["mapped"]["bitmap_offset"] + bit // 8] |= 1 << (bit % 8)
    return bytes(buf)


def truncate_in_pages(data, desc):
    return data[:pages_offset(desc, 0) + MAIN // 2]


def page_record(data, desc):
    """A ZERO record for pc.ram page 0 before the END section's EOS."""
    end = [s for s in desc["sections"] if s["type"] == "END" and s["name"] == "ram"]
    payload = end[0]["offset"] + 5
    assert data[payload:payload + 8] == struct.pack(">Q", 0x10)
    rec = struct.pack(">Q", 0x02) + b"\x06pc.ram" + b"\x00"
    return data[:payload] + rec + data[payload:]


def flip_capability(data, desc):
    at = data.find(b"\x0amapped-ram")
    assert 0 < at < 100
    return data[:at] + b"\x0amapped-rbm" + data[at + 11:]


DAMAGE = {
    "version": (lambda d, _: patch_header(d, "pc.ram", 0, 2),
                "block 'pc.ram': mapped-ram header version 2"),
    "page-size": (lambda d, _: patch_header(d, "pc.ram", 1, 8192),
                  "block 'pc.ram': mapped-ram page size 8192"),
    "bitmap-offset": (lambda d, _: patch_header(d, "pc.ram", 2, 7),
                      "block 'pc.ram': mapped-ram bitmap at offset 7, not just after its "
                      "header"),
    "pages-unaligned": (lambda d, desc: patch_header(d, "pc.ram", 3, pages_offset(desc, 0) + 1),
                        "block 'pc.ram': mapped-ram pages at offset"),
    "pages-past-eof": (lambda d, _: patch_header(d, "pc.rom", 3, 1 << 40),
                       "block 'pc.rom': mapped-ram pages at offset 1099511627776"),
    "bitmap-past-last-page": (set_bit_past_end,
                              "block 'pc.rom': the mapped-ram bitmap marks pages past the "
                              "block's 259"),
    "truncated-in-pages": (truncate_in_pages, "do not fit between its bitmap"),
    "page-record": (page_record, "a page record in a mapped-ram stream"),
    "unknown-capability": (flip_capability,
                           "saved with capability 'mapped-rbm', which amber cannot load"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged(good, tmp_path, damage):
    data, desc = good
    make, needle = DAMAGE[damage]
    bad = make(data, desc)
    assert bad != data
    img = tmp_path / "bad.img"
    img.write_bytes(bad)
    out = tmp_path / "extract"
    for args in (("verify", img), ("info", img), ("info", "--json", img),
                 ("extract-ram", img, out)):
        p = run(AMBER_IMG, *args, check=False)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert p.stdout == "", args
        assert p.stderr.startswith("amber-img: %s: " % img) and p.stderr.count("\n") == 1, \
            (args, p.stderr)
        assert needle in p.stderr, (args, p.stderr)
    # Nothing half-written is left behind.
    assert os.listdir(out) == []
    shutil.rmtree(out)


# ---- holes read as zeros ----

def write_sparse(path, data):
    """data with every all-zero page left as a hole (where the file system can)."""
    with open(path, "wb") as f:
        for at in range(0, len(data), PAGE):
            page = data[at:at + PAGE]
            if page.count(0) != len(page):
                f.seek(at)
                f.write(page)
        f.truncate(len(data))


@pytest.mark.parametrize("tail", [0, 3 * MIB + 5], ids=["whole", "zeros-after"])
def test_sparse_and_dense_read_alike(good, tmp_path, tail):
    """The description is searched in the file's data only; holes must not change a verdict.

    "whole" is the good image with every zero page a hole, so its description
    sits in the last of many data extents; "zeros-after" adds zeros past its
    end, which must be reported as a missing description either way.
    """
    data = good[0] + bytes(tail)
    dense, sparse = tmp_path / "dense.img", tmp_path / "sparse.img"
    dense.write_bytes(data)
    write_sparse(sparse, data)
    assert read(sparse) == data
    if sparse_files_work(str(tmp_path)):
        assert os.stat(sparse).st_blocks * 512 < len(data) // 2
    verdicts = []
    for img in (dense, sparse):
        p = run(AMBER_IMG, "verify", img, check=False)
        verdicts.append((p.returncode, p.stdout, p.stderr.replace(str(img), "IMG")))
    assert verdicts[0] == verdicts[1]
    if tail:
        assert verdicts[0][0] == 1 and "no VMDESCRIPTION at the end of the file" in verdicts[0][2]
    else:
        assert verdicts[0] == (0, "OK\n", "")
        infos = [json.loads(run(AMBER_IMG, "info", "--json", img).stdout)
                 for img in (dense, sparse)]
        assert infos[0].pop("file") == str(dense) and infos[1].pop("file") == str(sparse)
        assert infos[0] == infos[1]
        desc = infos[0]["vmdesc"]
        assert desc["offset"] + 5 + desc["size"] == len(data), desc
