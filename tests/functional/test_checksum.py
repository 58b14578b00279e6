"""x-checksum with a guest: saves that carry checksums, and loads that check them.

What a user checks: with `x-checksum` on, `migrate file:` writes a stream
(plain or mapped-ram) that `amber-img verify` checks and lists the
capability of, and `-incoming file:` restores a guest whose RAM equals the
source's.  A byte of a page changed in the file: the destination refuses
the image before any vCPU runs, naming the page.  A destination with
x-checksum set refuses a stream saved without it; a source refuses
x-checksum with postcopy-ram.  (The byte-by-byte coverage is the unit
test's, tests/unit/test-checksum.c, and test_img_checksum.py's.)
"""
import json
import os

import pytest

from test_mapped_ram import MEM_MIB, mapped_on, pages_offset
from test_saverestore import (amber_img, check_source_after_save, guest_args, pmemsave,
                              restore_and_check, save, start_qmp, wavecheck)
from vm import no_sanitizer_report


def checksum_on(c):
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "x-checksum", "state": True}]})


def saved(make_vm, tmp, mapped, smp=2, backend="ram"):
    v, c = start_qmp(make_vm, guest_args(smp, backend, MEM_MIB))
    v.wait_reports(smp, rounds=2, timeout=90)
    checksum_on(c)
    if mapped:
        mapped_on(c, threads=2)
    img = os.path.join(tmp, "vm.img")
    info = save(c, "file:" + img)
    check_source_after_save(c, info, MEM_MIB)
    dump = os.path.join(tmp, "src.raw")
    pmemsave(c, dump, MEM_MIB)
    waves = wavecheck(dump, MEM_MIB)
    no_sanitizer_report(v.output())
    v.kill()
    return img, dump, waves


@pytest.mark.parametrize("mapped,backend", [(False, "ram"), (True, "memfd")],
                         ids=["plain", "mapped"])
def test_save_and_restore(tmpvm, tmp_path, mapped, backend):
    tmp = str(tmp_path)
    img, dump, waves = saved(tmpvm, tmp, mapped, backend=backend)
    assert amber_img("verify", img).stdout.strip() == "OK"
    caps = json.loads(amber_img("info", "--json", img).stdout)["capabilities"]
    assert caps == (["mapped-ram", "x-checksum"] if mapped else ["x-checksum"])
    restore_and_check(tmpvm, ["-incoming", "file:" + img], 2, backend, dump, waves, tmp)


def test_corrupt_page_refused_before_the_guest_runs(tmpvm, tmp_path):
    tmp = str(tmp_path)
    img, dump, waves = saved(tmpvm, tmp, True)
    start = pages_offset(img)
    with open(dump, "rb") as f:
        ram = f.read()
    page = next(p for p in range(1, len(ram) // 4096) if any(ram[p * 4096:(p + 1) * 4096]))
    with open(img, "r+b") as f:
        f.seek(start + page * 4096 + 99)
        b = f.read(1)[0]
        f.seek(start + page * 4096 + 99)
        f.write(bytes([b ^ 0x01]))
    d, dc = start_qmp(tmpvm, guest_args(2, "ram", MEM_MIB) + ["-incoming", "defer"])
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    assert d.proc.wait(timeout=60) == 1
    assert "block 'pc.ram': page %d" % page in d.output()
    assert "fails its checksum" in d.output()
    assert d.reports() == []


def test_destination_requires_checksums(tmpvm, tmp_path):
    tmp = str(tmp_path)
    v, c = start_qmp(tmpvm, guest_args(1, "ram", MEM_MIB))
    v.wait_reports(1, rounds=1, timeout=90)
    img = os.path.join(tmp, "plain.img")
    save(c, "file:" + img)
    v.kill()
    d, dc = start_qmp(tmpvm, guest_args(1, "ram", MEM_MIB) + ["-incoming", "defer"])
    checksum_on(dc)
    dc.ok("migrate-incoming", {"uri": "file:" + img})
    assert d.proc.wait(timeout=60) == 1
    assert "x-checksum is set, and this stream carries no checksums" in d.output()


def test_refused_with_postcopy(tmpvm, tmp_path):
    v, c = start_qmp(tmpvm, guest_args(1, "ram", MEM_MIB))
    checksum_on(c)
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": "postcopy-ram", "state": True}]})
    e = c.error("migrate", {"uri": "unix:" + os.path.join(str(tmp_path), "sock")})
    assert e["desc"].startswith("x-checksum covers the migration stream, and postcopy-ram")
    assert c.ok("query-status")["running"] is True
