"""Soak: randomized cycles of the migrations the other tests check one by one.

Each cycle draws, from a seed (AMBER_SOAK_SEED, default 1; the test id
names the draw), an operation, a backend and a vCPU count, and runs it
with the checks its own tests make:

  bgsnap          background snapshot, restored paused: the image is the
                  guest at the pause (wave invariant at positions between
                  the last report before and the first after), and both
                  sides run on (test_bgsnapshot.snapshot_round)
  bgsnap-cancel   a background snapshot cancelled while pages are
                  protected: the guest runs on, nothing stays protected
                  or registered (check_released)
  save            a stopped save to file:, plain, mapped-ram, and with
                  or without x-checksum: amber-img verify, and the
                  restored guest's RAM equals the source's, byte for byte,
                  and holds the wave; then it runs on
  precopy         a live migration over unix:, the destination checked as
                  test_precopy checks it
  postcopy        a postcopy migration, switched after two passes: the
                  source completes and the destination runs on and holds
                  the wave

over ram/memfd/file backends (file: where the operation takes it) x 1, 2,
4 and 8 vCPUs (live migrations up to 4).  The guests run the wave workload, whose invariant is what
makes a wrong page visible; a workload without one could only be compared
byte for byte, which the save cycles already do.

`make check` runs 20 cycles; `make soak N=1000` runs N (and the engine's
soak, test-bg-snapshot --soak).  AMBER_SOAK_CYCLES sets N here.
"""
import os
import random

import pytest

from test_bgsnapshot import (check_released, enable, running_source, snapshot_round,
                             wait_active_with_wp)
from test_postcopy import (check_destination_runs, check_source_completed, pc_pair,
                           start_and_switch)
from test_precopy import check_completed_live, check_destination, pair
from test_saverestore import amber_img, full_round, wait_migration

CYCLES = int(os.environ.get("AMBER_SOAK_CYCLES", "20"))
SEED = int(os.environ.get("AMBER_SOAK_SEED", "1"))
OPS = ["bgsnap", "bgsnap-cancel", "save", "precopy", "postcopy"]
SMP = [1, 2, 4, 8]


def draw(i):
    """Cycle i's operation, backend, vCPUs and save variant, from the seed alone."""
    rnd = random.Random(SEED * 1000003 + i)
    op = rnd.choice(OPS)
    backends = {"bgsnap": ["ram", "memfd", "file"], "bgsnap-cancel": ["ram", "memfd", "file"],
                "save": ["ram", "memfd"], "precopy": ["ram"], "postcopy": ["ram", "memfd"]}
    backend = rnd.choice(backends[op])
    # A live migration's convergence is tested up to 4 vCPUs (2 host cores).
    smp = rnd.choice(SMP if op not in ("precopy", "postcopy") else SMP[:3])
    variant = rnd.choice(["plain", "mapped", "checksum", "mapped-checksum"])
    return op, backend, smp, variant


PLAN = [draw(i) for i in range(CYCLES)]


def set_caps(c, names):
    c.ok("migrate-set-capabilities",
         {"capabilities": [{"capability": n, "state": True} for n in names]})


@pytest.mark.parametrize("cycle", range(CYCLES), ids=[
    "c%04d-%s-%s-smp%d%s" % (i, op, be, smp, "-" + var if op == "save" else "")
    for i, (op, be, smp, var) in enumerate(PLAN)])
def test_cycle(tmpvm, tmp_path, cycle):
    op, backend, smp, variant = PLAN[cycle]
    tmp = str(tmp_path)
    if op == "bgsnap":
        snapshot_round(tmpvm, tmp, smp, backend)
    elif op == "bgsnap-cancel":
        v, c = running_source(tmpvm, smp, backend, tmp)
        enable(c)
        out = os.path.join(tmp, "vm.snap")
        c.ok("migrate", {"uri": "exec:sleep 5; cat > '%s'" % out})
        wait_active_with_wp(v, c)
        c.ok("migrate_cancel")
        assert wait_migration(c, timeout=30)["status"] == "cancelled"
        check_released(v, c, smp=smp)
    elif op == "save":
        img = os.path.join(tmp, "vm.img")
        caps = {"plain": [], "mapped": ["mapped-ram"], "checksum": ["x-checksum"],
                "mapped-checksum": ["mapped-ram", "x-checksum"]}[variant]
        # The stream parser of check_image reads QEMU's plain layout only.
        full_round(tmpvm, tmp_path, smp, backend, "file:" + img,
                   ["-incoming", "file:" + img], img if variant == "plain" else None,
                   before_save=lambda c: caps and set_caps(c, caps))
        assert amber_img("verify", img).stdout.strip() == "OK"
    elif op == "precopy":
        s, sc, d, dc, uri = pair(tmpvm, "unix", smp)
        sc.ok("migrate", {"uri": uri})
        check_completed_live(sc, wait_migration(sc, timeout=120))
        check_destination(s, sc, d, dc, smp, tmp)
    else:
        s, sc, d, dc, uri = pc_pair(tmpvm, "unix", smp, backend)
        start_and_switch(sc, uri)
        check_source_completed(sc, wait_migration(sc, timeout=120))
        check_destination_runs(d, dc, smp, tmp_path)


def test_plan_covers_everything():
    """Over 1000 cycles of the default seed every operation, backend and size comes up."""
    plan = [draw(i) for i in range(1000)]
    assert {p[0] for p in plan} == set(OPS)
    assert {p[2] for p in plan} == set(SMP)
    assert {(p[0], p[1]) for p in plan} >= {("bgsnap", "file"), ("save", "memfd"),
                                             ("postcopy", "memfd")}
