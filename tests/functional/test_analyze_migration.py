"""QEMU's scripts/analyze-migration.py reads amber's saved VMs.

Debian does not ship the script: set AMBER_ANALYZE_MIGRATION to a copy of
it (from a QEMU source tree) to run these tests; they skip otherwise.
"""
import filecmp
import json
import os
import subprocess
import sys

import pytest

import qevm
from test_saverestore import amber_img, save_running_guest

SCRIPT = os.environ.get("AMBER_ANALYZE_MIGRATION")
MEM_MIB = 32

pytestmark = pytest.mark.skipif(
    not SCRIPT or not os.path.isfile(SCRIPT),
    reason="set AMBER_ANALYZE_MIGRATION=/path/to/qemu/scripts/analyze-migration.py "
           "(not shipped by Debian)")


@pytest.fixture
def saved(tmpvm, tmp_path):
    path = str(tmp_path / "vm.img")
    v, c, info = save_running_guest(tmpvm, path, smp=2, mem_mib=MEM_MIB)
    return path


def analyze(args, cwd):
    p = subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                       cwd=cwd, timeout=300)
    assert p.returncode == 0, "analyze-migration %s failed:\n%s" % (args, p.stderr[-3000:])
    return p.stdout


def test_dump_state(saved, tmp_path):
    state = json.loads(analyze(["-f", saved, "-d", "state"], str(tmp_path)))
    s = qevm.read(saved)
    want = ["%s (%d)" % (x.name, x.section_id) for x in s.sections
            if x.type in (qevm.START, qevm.FULL)]
    assert list(state) == want
    ram = state["ram (%d)" % s.ram_sections()[0].section_id]
    assert ram["section sizes"] == {n: "0x%016x" % l for n, l in s.ram_blocks()}
    # Each device's fields were read by name, as its description says.
    for d in s.vmdesc["devices"]:
        sec = s.full(d["name"], d["instance_id"])
        got = state["%s (%d)" % (d["name"], sec.section_id)]
        names = list(dict.fromkeys(f["name"] for f in d["fields"]))   # arrays: one key
        assert names == [k for k in got if "/" not in k]


def test_extract(saved, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    analyze(["-f", saved, "-x"], str(out))
    assert json.load(open(out / "desc.json"))["page_size"] == 4096
    assert json.load(open(out / "state.json"))
    # QEMU's script and amber-img extract the same RAM.
    ours = tmp_path / "ours"
    amber_img("extract-ram", saved, ours)
    for name, length in qevm.read(saved).ram_blocks():
        assert os.path.getsize(out / name) == length
        assert filecmp.cmp(str(out / name), str(ours / name), shallow=False)
