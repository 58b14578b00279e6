"""amber-img on images saved with x-checksum (no guest needed).

tests/tools/mkimage saves synthetic RAM with the real saving code and
--checksum, plainly or with mapped-ram.  Such an image verifies, and info
lists the capability; extract-ram gives the blocks back byte for byte.
Then single bytes are flipped all over the file (every region: header,
configuration, section headers, page records and their checksums, the
bitmaps, checksum tables, the gaps before the pages, pages and holes, the
VMDESCRIPTION): `verify` must refuse each with one line and status 1.
Without x-checksum a flipped page byte passes verify, which is what the
capability is for.  Every byte is flipped in turn by the unit test
(tests/unit/test-checksum.c); this one runs the tool on a sample.
"""
import os
import random

import pytest

from test_img_mapped import (AMBER_IMG, MAIN, PAGE, block_header, info, mkimage, read,
                             run, tools)   # noqa: F401  (tools is a fixture)

CHECKSUM = ["--checksum"]


def make(tmp_path, mapped):
    d = tmp_path / ("mapped" if mapped else "plain")
    d.mkdir()
    img, dumps = mkimage(str(d), mapped, 2, extra=CHECKSUM)
    return img, dumps


def flip(path, off, x):
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)[0]
        f.seek(off)
        f.write(bytes([b ^ x]))


def sample_offsets(img, mapped):
    """Offsets in every region of the image, and a seeded random spread."""
    data = read(img)
    size = len(data)
    offs = set(range(0, 120)) | set(range(size - 80, size))
    if mapped:
        for name in ("pc.ram", "pc.rom"):
            at, (_, _, bitmap, pages) = block_header(data, name)
            offs |= {at - 1, at, at + 27, bitmap, bitmap + 8, pages - 1, pages - 4096,
                     pages, pages + PAGE - 1}
            # A page with data and a hole, read from the bitmap.
            bits = data[bitmap]
            for p in range(8):
                offs.add(pages + p * PAGE + 2000 + (0 if bits >> p & 1 else 1))
    rnd = random.Random(20261206)
    offs |= {rnd.randrange(size) for _ in range(40)}
    return sorted(o for o in offs if 0 <= o < size)


@pytest.mark.parametrize("mapped", [False, True], ids=["plain", "mapped"])
def test_checksummed_image(tools, tmp_path, mapped):
    img, dumps = make(tmp_path, mapped)
    assert run(AMBER_IMG, "verify", img).stdout == "OK\n"
    want = ["mapped-ram", "x-checksum"] if mapped else ["x-checksum"]
    assert info(img)["capabilities"] == want
    text = run(AMBER_IMG, "info", img).stdout
    assert "capabilities: %s\n" % " ".join(want) in text
    out = tmp_path / "out"
    run(AMBER_IMG, "extract-ram", img, out)
    for name, raw in dumps.items():
        assert read(os.path.join(out, name)) == raw, name


@pytest.mark.parametrize("mapped", [False, True], ids=["plain", "mapped"])
def test_every_flip_refused(tools, tmp_path, mapped):
    img, _ = make(tmp_path, mapped)
    offs = sample_offsets(img, mapped)
    assert len(offs) > 150
    by_checksum = 0
    for i, off in enumerate(offs):
        x = 0xff if i % 3 == 2 else 1 << (i % 8)
        flip(img, off, x)
        p = run(AMBER_IMG, "verify", img, check=False)
        flip(img, off, x)
        assert p.returncode == 1, "byte %d changed by 0x%02x: verify said %r" % (
            off, x, p.stdout)
        lines = p.stderr.strip().split("\n")
        assert len(lines) == 1 and lines[0].startswith("amber-img: %s: " % img), p.stderr
        by_checksum += "checksum" in p.stderr or "corrupt" in p.stderr
    # The rest are caught by a structural check that comes first (headers, lengths).
    assert by_checksum >= len(offs) // 4
    assert run(AMBER_IMG, "verify", img).stdout == "OK\n"


def test_page_checksum_names_the_page(tools, tmp_path):
    img, _ = make(tmp_path, True)
    data = read(img)
    _, (_, _, bitmap, pages) = block_header(data, "pc.ram")
    page = next(p for p in range(64) if data[bitmap + p // 8] >> (p % 8) & 1)
    flip(img, pages + page * PAGE + 123, 0x10)
    p = run(AMBER_IMG, "verify", img, check=False)
    assert p.returncode == 1
    assert "block 'pc.ram': page %d (file offset %d) fails its checksum" % (
        page, pages + page * PAGE) in p.stderr
    # extract-ram reads the same pages: it refuses too, leaving nothing behind.
    out = tmp_path / "out"
    p = run(AMBER_IMG, "extract-ram", img, out, check=False)
    assert p.returncode == 1 and "fails its checksum" in p.stderr


def test_gap_byte_named(tools, tmp_path):
    """A byte set between a block's checksum table and its pages is named, the first of two."""
    img, _ = make(tmp_path, True)
    data = read(img)
    _, (_, _, bitmap, pages) = block_header(data, "pc.ram")
    assert pages - 5000 > bitmap + 16384 and not any(data[pages - 5000:pages])
    for offs in ([pages - 1], [pages - 4095, pages - 1], [pages - 5000, pages - 4096]):
        for off in offs:
            flip(img, off, 0x80)
        p = run(AMBER_IMG, "verify", img, check=False)
        for off in offs:
            flip(img, off, 0x80)
        assert p.returncode == 1
        assert ("block 'pc.ram': byte %d between its checksum table and its pages is not "
                "zero" % offs[0]) in p.stderr, (offs, p.stderr)
    assert run(AMBER_IMG, "verify", img).stdout == "OK\n"


def test_without_checksum_a_flip_passes(tools, tmp_path):
    d = tmp_path / "nosum"
    d.mkdir()
    img, _ = mkimage(str(d), False, 1)
    data = read(img)
    # Somewhere in the middle of the first page record's data.
    at = data.find(b"\x5a\x5b", 200)      # the top bytes of pc.ram's pattern
    assert at > 0 and at < MAIN
    flip(img, at + 1, 0x01)
    assert run(AMBER_IMG, "verify", img).stdout == "OK\n"
