"""Command-line errors: one line on stderr, exit status 1, nothing started."""
import os
import shutil
import subprocess

import pytest

import vm as vmmod

BAD = [
    (["-m", "0"], "amber: -m 0: memory size must be greater than zero"),
    (["-m", "abc"], "amber: -m abc: invalid size 'abc'"),
    (["-m", "-1"], "amber: -m -1: invalid size '-1'"),
    (["-m"], "amber: -m: requires an argument"),
    (["-smp", "0"], "amber: -smp 0: the number of vCPUs must be between 1 and 8"),
    (["-smp", "9"], "amber: -smp 9: the number of vCPUs must be between 1 and 8"),
    (["-smp", "cpus=x"], "amber: -smp cpus=x: 'x' is not a number of vCPUs"),
    (["-accel", "tcg"], "amber: -accel tcg: amber runs guests on kvm only"),
    (["-bogus"], "amber: -bogus: invalid option"),
    (["--bogus"], "amber: --bogus: invalid option"),
    (["disk.img"], "amber: disk.img: unexpected argument"),
    (["-serial", "foo:bar"], "amber: -serial foo:bar: unknown chardev backend 'foo'"),
    (["-qmp", "tcp:1234"], "amber: -qmp tcp:1234: unknown chardev backend 'tcp'"),
    (["-monitor", "unix:"], "amber: -monitor unix:: unix: needs a socket path"),
    (["-serial", "stdio", "-monitor", "stdio"],
     "amber: -monitor stdio: stdio is already used by -serial"),
    (["-serial", "stdio", "-qmp", "stdio"],
     "amber: -qmp stdio: stdio is already used by -serial"),
    (["-object", "memory-backend-ram,size=1G"],
     "amber: -object memory-backend-ram,size=1G: id= is required"),
    (["-object", "memory-backend-ram,id=m"],
     "amber: -object memory-backend-ram,id=m: size= is required"),
    (["-object", "memory-backend-file,id=m,size=1G"],
     "amber: -object memory-backend-file,id=m,size=1G: mem-path= is required"),
    (["-object", "memory-backend-ram,id=m,size=1G,colour=red"],
     "amber: -object memory-backend-ram,id=m,size=1G,colour=red: "
     "memory-backend-ram has no property 'colour'"),
    (["-object", "memory-backend-ram,id=m,size=1G", "-object", "memory-backend-memfd,id=m,size=1G"],
     "amber: -object memory-backend-memfd,id=m,size=1G: duplicate object id 'm'"),
    (["-object", "iothread,id=io0"], "amber: -object iothread,id=io0: unknown object type 'iothread'"),
    (["-machine", "memory-backend=nope"],
     "amber: -machine memory-backend=nope: no -object with id 'nope'"),
    (["-machine", "type=q35"], "amber: -machine type=q35: unsupported machine type 'q35'"),
    (["-m", "512", "-object", "memory-backend-ram,id=m,size=1G", "-machine", "memory-backend=m"],
     "amber: -m (512 MiB) does not match the size of memory backend 'm'"),
    (["-incoming", "bogus:x"], "amber: -incoming bogus:x: unknown migration URI scheme"),
    (["-trace", "no_such_event_anywhere"], "amber: -trace no_such_event_anywhere:"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input(amber_bin, tmp_path, args, message):
    # Files the command would create if it got as far as starting anything.
    pidfile = tmp_path / "amber.pid"
    log = tmp_path / "amber.log"
    extra = ["-pidfile", str(pidfile), "-D", str(log)]
    r = vmmod.run(extra + args, timeout=10, cwd=str(tmp_path))
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(message), lines[0]
    assert r.stdout == ""
    assert not pidfile.exists() and not log.exists()


def test_bad_input_creates_no_serial_file(amber_bin, tmp_path):
    out = tmp_path / "serial.log"
    r = vmmod.run(["-serial", "file:%s" % out, "-m", "0"], timeout=10)
    assert r.returncode == 1
    assert not out.exists()


def test_version(amber_bin):
    for opt in ("-version", "--version"):
        r = vmmod.run([opt], timeout=10)
        assert r.returncode == 0
        assert r.stdout.startswith("amber version ")
        version = r.stdout.split()[2]
        assert all(p.isdigit() for p in version.split(".")) and version.count(".") == 2
        assert r.stderr == ""


def test_help_lists_every_option(amber_bin):
    r = vmmod.run(["-help"], timeout=10)
    assert r.returncode == 0
    assert r.stdout.startswith("usage: amber")
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.startswith("  -")}
    for opt in ("-m", "-smp", "-accel", "-kernel", "-append", "-initrd", "-object", "-machine",
                "-serial", "-qmp", "-monitor", "-S", "-name", "-pidfile", "-daemonize", "-D",
                "-trace", "-version", "-help", "-incoming",
                # QEMU's words that libvirt writes (tests/functional/test_qemu_cli.py)
                "-no-user-config", "-nodefaults", "-nographic", "-display", "-cpu",
                "-overcommit", "-uuid", "-rtc", "-no-shutdown", "-no-acpi", "-boot", "-usb",
                "-msg", "-chardev", "-mon", "-device", "-audiodev", "-global"):
        assert opt in listed, opt


def test_missing_kernel_file(amber_bin, tmp_path):
    """A -kernel that does not exist is reported in one line and exits 1."""
    missing = os.path.join(str(tmp_path), "no-such-kernel")
    r = vmmod.run(["-kernel", missing], timeout=30)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("amber: ") and missing in r.stderr


# An unusable /dev/kvm, in a private mount namespace so the host's stays as
# it is: missing, or something that is not KVM.
UNUSABLE_KVM = [
    ("mount -t tmpfs none /dev",
     "amber: cannot open /dev/kvm (is KVM enabled and are you allowed to use it?): "
     "No such file or directory"),
    ("mount -t tmpfs none /dev && mknod /dev/kvm c 1 3",
     "amber: /dev/kvm is not a KVM device: Inappropriate ioctl for device"),
]


@pytest.mark.parametrize("setup,message", UNUSABLE_KVM, ids=["missing", "not-kvm"])
def test_unusable_kvm(amber_bin, tmp_path, setup, message):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    serial = tmp_path / "serial.log"
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        "%s && exec %s -m 64 -serial file:%s" % (setup, amber_bin, serial)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines() == [message]
    assert not serial.exists()
