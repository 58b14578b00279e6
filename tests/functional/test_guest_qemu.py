"""The built-in guest under QEMU (the reference VMM for it).

QEMU boots the image through SeaBIOS, which runs emulated on hosts where
guest ring 0 is emulated (PVM), so the first report can take several
seconds; the waits below are generous for that reason only.
"""
import importlib.util
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import vm as vmmod  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WAVECHECK = os.path.join(ROOT, "scripts", "wavecheck.py")
QEMU = shutil.which("qemu-system-x86_64")
RAM_MIB = 256
BOOT_TIMEOUT = 90


def _load_wavecheck():
    spec = importlib.util.spec_from_file_location("wavecheck", WAVECHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wavecheck = _load_wavecheck()


@pytest.fixture(scope="module")
def guest_elf():
    if QEMU is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable")
    if not os.path.exists(vmmod.GUEST_ELF):
        pytest.fail("the guest image is not built at %s (run make)" % vmmod.GUEST_ELF)
    return vmmod.GUEST_ELF


def qemu_vm(tmp_path, elf, smp, append, qmp=False):
    args = ["-accel", "kvm", "-m", str(RAM_MIB), "-smp", str(smp),
            "-kernel", elf, "-append", append, "-display", "none",
            "-nodefaults", "-no-reboot",
            "-device", "isa-debug-exit,iobase=0x501,iosize=4"]
    v = vmmod.Vm(args, binary=QEMU, tmpdir=str(tmp_path))
    if qmp:
        v.qmp_path = v.path("qmp.sock")
        v.args += ["-qmp", "unix:%s,server=on,wait=off" % v.qmp_path]
    return v


class Qmp:
    """Just enough QMP: greeting, capabilities, commands (events skipped)."""

    def __init__(self, path, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        assert "QMP" in self._read()
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.file.readline()
        assert line, "QMP connection closed"
        return json.loads(line)

    def cmd(self, name, **args):
        self.file.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
        self.file.flush()
        while True:
            msg = self._read()
            if "return" in msg:
                return msg["return"]
            if "error" in msg:
                raise AssertionError("%s failed: %s" % (name, msg["error"]))

    def close(self):
        self.sock.close()


def by_vcpu(reports):
    out = {}
    for r in reports:
        out.setdefault(r["vcpu"], []).append(r)
    return out


@pytest.mark.parametrize("smp", [1, 2])
def test_reports_advance_on_every_vcpu(tmp_path, guest_elf, smp):
    with qemu_vm(tmp_path, guest_elf, smp, "report=200 ws_mib=64") as v:
        banner = v.wait_serial(r"^amber-guest: (\d+) vcpus?, RAM (\d+) MiB, workload=wave",
                               timeout=BOOT_TIMEOUT)
        assert int(banner[0][0]) == smp
        assert 200 <= int(banner[0][1]) <= RAM_MIB
        reports = v.wait_reports(smp, rounds=4, timeout=60)
        assert set(by_vcpu(reports)) == set(range(smp))
        for vcpu, rs in by_vcpu(reports).items():
            progress = [(r["pass"], r["pos"]) for r in rs]
            assert progress == sorted(progress), (vcpu, progress)
            assert progress[-1] > progress[0], (vcpu, progress)
            assert rs[-1]["pass"] > 1, "vCPU %d never finished a pass" % vcpu
            assert rs[-1]["writes"] > 0
            assert rs[-1]["p99_us"] <= rs[-1]["maxstall_us"]


def test_passes_ends_with_debug_exit_code_zero(tmp_path, guest_elf):
    with qemu_vm(tmp_path, guest_elf, 2, "passes=3 ws_mib=8 report=100") as v:
        # isa-debug-exit turns the guest's 0 into QEMU status (0 << 1) | 1.
        assert v.wait(timeout=BOOT_TIMEOUT) == 1
        last = {vcpu: rs[-1] for vcpu, rs in by_vcpu(v.reports()).items()}
        assert set(last) == {0, 1}
        for r in last.values():
            assert (r["pass"], r["pos"]) == (4, 0)      # three passes done


@pytest.mark.parametrize("append,message", [
    ("rate=fast", "bad parameter 'rate=fast'"),
    ("colour=blue", "unknown parameter 'colour=blue'"),
])
def test_bad_parameter_exits_with_code_two(tmp_path, guest_elf, append, message):
    with qemu_vm(tmp_path, guest_elf, 1, append) as v:
        assert v.wait(timeout=BOOT_TIMEOUT) == (2 << 1) | 1
        assert message in v.serial()
        assert not v.reports()


def run_wavecheck(dump, *extra):
    return subprocess.run([sys.executable, WAVECHECK, dump, "--ram-mib", str(RAM_MIB)]
                          + list(extra), capture_output=True, text=True, timeout=120)


def corrupt_page(src, dst, vcpu, which):
    """Copy the dump, then break one page of `vcpu`'s partition."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        data = f.read(wavecheck.RECORDS_ADDR + 0x3000)
        rec = wavecheck.read_record(data, vcpu, 1 << 62)
        # A page well before pos when there is one, else well after it.
        index = rec["pos"] // 2 if rec["pos"] > 1 else (rec["pos"] + rec["npages"]) // 2
        for seg_addr, n in rec["segs"]:
            if index < n:
                addr = seg_addr + index * 4096
                break
            index -= n
        if which == "stale":        # both ends from a pass that is not allowed there
            f.seek(addr)
            f.write(struct.pack("<Q", (rec["pass"] + 5) << 32))
            f.seek(addr + 4096 - 8)
            f.write(struct.pack("<Q", (rec["pass"] + 5) << 32))
        else:                       # torn: only the tail rewritten
            f.seek(addr + 4096 - 8)
            f.write(struct.pack("<Q", 0xdeadbeef))


@pytest.mark.parametrize("smp", [1, 2])
def test_pmemsave_dump_satisfies_wave_invariant(tmp_path, guest_elf, smp):
    with qemu_vm(tmp_path, guest_elf, smp, "report=200", qmp=True) as v:
        v.wait_serial(r"^amber-guest: ", timeout=BOOT_TIMEOUT)
        v.wait_reports(smp, rounds=2, timeout=60)
        qmp = Qmp(v.qmp_path)
        try:
            qmp.cmd("stop")
            dump = v.path("ram.dump")
            qmp.cmd("pmemsave", val=0, size=RAM_MIB << 20, filename=dump)
        finally:
            qmp.close()

    res = run_wavecheck(dump, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["ok"] and out["ncpus"] == smp and out["workload"] == "wave"
    assert [c["vcpu"] for c in out["vcpus"]] == list(range(smp))
    assert all(c["pass"] >= 1 and c["violations"] == 0 for c in out["vcpus"])

    for which in ("stale", "torn"):
        bad = v.path("bad-%s.dump" % which)
        corrupt_page(dump, bad, smp - 1, which)
        res = run_wavecheck(bad)
        assert res.returncode == 1, (which, res.stdout, res.stderr)
        assert "vcpu=%d" % (smp - 1) in res.stdout and "violations=1" in res.stdout
        os.unlink(bad)

    # A dump without the guest's header cannot be checked at all.
    empty = v.path("zero.dump")
    with open(empty, "wb") as f:
        f.truncate(RAM_MIB << 20)
    res = run_wavecheck(empty)
    assert res.returncode == 2 and "no built-in guest header" in res.stderr
