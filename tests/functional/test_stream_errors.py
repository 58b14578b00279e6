"""A damaged or mismatched saved VM is refused, with a message naming the problem.

One good stream is saved from a running guest, then cut short at many
places (header, configuration, RAM setup, RAM records, a device section,
before EOF, inside the VMDESCRIPTION), bit-flipped in its framing, or
rewritten (another machine type, an unknown section).  For each,
`amber -incoming file:...` must exit non-zero with a message that names
what is wrong, the guest must never run (nothing on its serial port), and
nothing may crash (no sanitizer report when amber is an ASan build).
`amber-img verify` must refuse the same file with one line.
"""
import json
import os
import re
import struct
import subprocess

import pytest

import qevm
import vm as vmmod
from vm import no_sanitizer_report
from test_saverestore import amber_img, guest_args, save_running_guest

MEM_MIB = 32
SMP = 2

TRUNCATED = r"unexpected end of stream"


@pytest.fixture(scope="module")
def good(tmp_path_factory, amber_bin, kvm):
    """(path, bytes, parsed stream) of a guest saved while running."""
    tmp = tmp_path_factory.mktemp("good")
    vms = []

    def make(args=()):
        d = tmp / ("vm%d" % len(vms))
        d.mkdir()
        v = vmmod.Vm(args, tmpdir=str(d))
        vms.append(v)
        return v

    path = str(tmp / "good.img")
    try:
        save_running_guest(make, path, smp=SMP, mem_mib=MEM_MIB)
    finally:
        for v in vms:
            v.kill()
    data = open(path, "rb").read()
    return path, data, qevm.parse(data)


def restore(tmp_path, data, args=None, name="bad.img"):
    """Run `amber -incoming file:` on data; returns (exit status, output, serial)."""
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(data)
    serial = str(tmp_path / "serial.log")
    cmd = [vmmod.AMBER] + (args or guest_args(SMP, mem_mib=MEM_MIB)) + [
        "-serial", "file:" + serial, "-incoming", "file:" + path]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    text = open(serial, errors="replace").read() if os.path.exists(serial) else ""
    return p.returncode, p.stdout + p.stderr, text, path


def assert_refused(tmp_path, data, pattern, args=None, verify=True):
    rc, out, serial, path = restore(tmp_path, data, args)
    no_sanitizer_report(out)
    assert rc != 0, "amber accepted the stream:\n%s" % out
    assert re.search(pattern, out), "message %r does not match %r" % (out, pattern)
    assert serial == "", "the guest ran from a refused stream: %r" % serial[:500]
    if verify:
        p = amber_img("verify", path, check=False)
        no_sanitizer_report(p.stderr)
        assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
        assert p.stderr.startswith("amber-img: ") and p.stderr.count("\n") == 1, p.stderr
    return out


def ram_part(s):
    return [x for x in s.ram_sections() if x.type == qevm.PART][0]


def device(s, name="cpu", instance=0):
    return s.full(name, instance)


# Where to cut: a name and the offset as a function of the parsed stream.
CUTS = {
    "magic": lambda s: 2,
    "version": lambda s: 6,
    "configuration": lambda s: 15,
    "ram-setup-header": lambda s: s.ram_sections()[0].offset + 7,
    "ram-block-list": lambda s: s.ram_sections()[0].payload_offset + 12,
    "ram-first-record": lambda s: ram_part(s).payload_offset + 5,
    "ram-page-data": lambda s: ram_part(s).payload_offset + 8 + 1 + 6 + 2000,
    "ram-middle": lambda s: ram_part(s).payload_offset + len(ram_part(s).payload) // 2,
    "ram-footer": lambda s: ram_part(s).end - 2,
    "device-header": lambda s: device(s).offset + 3,
    "device-payload": lambda s: device(s).payload_offset + 100,
    "device-late": lambda s: device(s, "serial").payload_offset + 3,
    "device-footer": lambda s: device(s, "i8042").end - 1,
    "before-eof": lambda s: s.eof_offset,
    "vmdesc-length": lambda s: s.vmdesc_offset + 3,
    "vmdesc-json": lambda s: s.vmdesc_offset + 5 + len(s.vmdesc_raw) // 2,
    "vmdesc-last-byte": lambda s: len(s.serialize()) - 1,
}


@pytest.mark.parametrize("where", sorted(CUTS))
def test_truncated(tmp_path, good, where):
    _, data, s = good
    at = CUTS[where](s)
    assert 0 < at < len(data)
    assert_refused(tmp_path, data[:at], TRUNCATED)


def flip(data, offset, bit):
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


# Bit flips in framing bytes: (offset function, bit, what the message names).
FLIPS = {
    "magic": (lambda s: 0, 0, r"bad magic"),
    "stream-version": (lambda s: 7, 1, r"unsupported stream version"),
    "configuration-type": (lambda s: 8, 0, r"configuration section"),
    "start-type": (lambda s: s.ram_sections()[0].offset, 3, r"section type 0x09"),
    "device-type": (lambda s: device(s).offset, 0, r"section type 0x05"),
    "device-section-id": (lambda s: device(s).offset + 4, 4, r"section id"),
    "device-name-length": (lambda s: device(s).offset + 5, 0, r"unknown section"),
    "device-instance": (lambda s: device(s).payload_offset - 6, 0,
                        r"unknown section 'cpu' instance 256"),
    "device-version": (lambda s: device(s).payload_offset - 1, 1, r"version 3"),
    "device-footer-marker": (lambda s: device(s).end - 5, 0, r"footer .* got 0x7f"),
    "ram-footer-id": (lambda s: s.ram_sections()[0].end - 1, 2, r"footer .*section id"),
    "ram-record-flags": (lambda s: ram_part(s).payload_offset + 7, 6, r"flags 0x4"),
    "ram-block-name-length": (lambda s: ram_part(s).payload_offset + 8, 0, r"block"),
    "ram-block-size": (lambda s: s.ram_sections()[0].payload_offset + 8 + 1 + 6 + 4, 1,
                       r"block"),
    "eof-marker": (lambda s: s.eof_offset, 1, r"section|stream"),
    "vmdesc-type": (lambda s: s.vmdesc_offset, 0, r"after the end of the stream"),
}


@pytest.mark.parametrize("what", sorted(FLIPS))
def test_bit_flip(tmp_path, good, what):
    _, data, s = good
    where, bit, pattern = FLIPS[what]
    assert_refused(tmp_path, flip(data, where(s), bit), pattern)


def test_wrong_machine_type(tmp_path, good):
    _, data, s = good
    s2 = qevm.parse(data)
    s2.machine = "pc-i440fx-7.2"
    out = assert_refused(tmp_path, s2.serialize(), r"machine type")
    assert "pc-i440fx-7.2" in out


def test_different_memory_size(tmp_path, good):
    _, data, _ = good
    out = assert_refused(tmp_path, data, r"pc\.ram",
                         args=guest_args(SMP, mem_mib=MEM_MIB * 2), verify=False)
    assert str(MEM_MIB << 20) in out, out


@pytest.mark.parametrize("smp", [1, 4])
def test_different_vcpu_count(tmp_path, good, smp):
    _, data, _ = good
    assert_refused(tmp_path, data, r"vCPU", args=guest_args(smp, mem_mib=MEM_MIB),
                   verify=False)


def test_unknown_section(tmp_path, good):
    """A FULL section no device of this machine owns (described, so only the
    name is wrong)."""
    _, data, _ = good
    s = qevm.parse(data)
    new_id = max(x.section_id for x in s.sections) + 1
    s.items.append(qevm.Section(qevm.FULL, new_id, "x-bogus-device", 0, 1, b"\x01\x02"))
    s.vmdesc["devices"].append({"name": "x-bogus-device", "instance_id": 0,
                                "vmsd_name": "x-bogus-device", "version": 1,
                                "fields": [{"name": "data", "type": "buffer", "size": 2}]})
    s.vmdesc_raw = json.dumps(s.vmdesc).encode()
    rc, out, serial, path = restore(tmp_path, s.serialize())
    no_sanitizer_report(out)
    assert rc != 0 and "unknown section 'x-bogus-device'" in out, out
    assert serial == ""
    # amber-img describes what is there: the section is well formed.
    assert amber_img("verify", path).stdout.strip() == "OK"


def test_renamed_section(tmp_path, good):
    _, data, s = good
    sec = device(s, "serial")
    name_at = sec.offset + 6
    assert data[name_at:name_at + 6] == b"serial"
    bad = data[:name_at] + b"serjal" + data[name_at + 6:]
    assert_refused(tmp_path, bad, r"unknown section 'serjal'")


def test_page_outside_block(tmp_path, good):
    """A RAM record whose offset lies past the end of its block."""
    _, data, s = good
    at = ram_part(s).payload_offset
    (word,) = struct.unpack(">Q", data[at:at + 8])
    bad_word = (MEM_MIB << 20) | (word & 0xfff)
    bad = data[:at] + struct.pack(">Q", bad_word) + data[at + 8:]
    assert_refused(tmp_path, bad, r"beyond block|outside block")


def test_good_stream_restores(tmp_path, good):
    """The control case: the unmodified stream is accepted and the guest runs."""
    _, data, _ = good
    path = str(tmp_path / "good.img")
    with open(path, "wb") as f:
        f.write(data)
    v = vmmod.Vm(guest_args(SMP, mem_mib=MEM_MIB) + ["-incoming", "file:" + path],
                 tmpdir=str(tmp_path))
    with v:
        v.wait_reports(SMP, rounds=1, timeout=60)
        no_sanitizer_report(v.output())
