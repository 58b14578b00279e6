"""libvirt (Debian's 9.0) probes amber as an emulator, through its embedded QEMU driver.

`virsh -c qemu:///embed?root=DIR domcapabilities --emulatorbin amber` runs
libvirt's QEMU driver inside virsh, with every file under DIR and no daemon:
it starts amber the way it starts any QEMU for its capability probe
(-machine none, QMP on a socket, -daemonize), asks its questions, writes
what it learnt to DIR/cache/qemu/capabilities/*.xml and answers from it.

On a host with KVM the answer is the domain capabilities.  Without KVM
libvirt still probes (the cache file is the proof and holds what it
learnt) and then says, rightly, that amber cannot run a kvm domain here;
amber offers no tcg, so there is no other virt type to ask for.

As root, libvirt's driver would run the probe as Debian's libvirt-qemu
user, which only the daemon's package creates; the test runs virsh as
nobody instead, an unprivileged embedded driver that probes as its caller.
"""
import glob
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import pytest

import vm as vmmod


def qemu_driver_missing():
    if not shutil.which("virsh"):
        return "virsh is not installed (scripts/install-deps.sh installs libvirt-clients)"
    if not glob.glob("/usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so"):
        return ("libvirt's QEMU driver is not installed (scripts/install-deps.sh installs "
                "libvirt-daemon-driver-qemu)")
    return None


def kvm_usable_by(uid, gids):
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return False
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & 0o600 == 0o600)
    if st.st_gid in gids:
        return st.st_mode & 0o060 == 0o060
    return st.st_mode & 0o006 == 0o006


def unprivileged(root, amber_bin):
    """(prefix, uid, gids): how to run libvirt as nobody when we are root (else as
    ourselves, prefix empty), with /dev/kvm's group; root is made theirs."""
    prefix, uid, gids = [], os.geteuid(), set(os.getgroups())
    if uid == 0:
        if not shutil.which("setpriv"):
            pytest.skip("as root, setpriv(1) is needed to run virsh as nobody")
        nobody = pwd.getpwnam("nobody")
        uid, gids = nobody.pw_uid, {nobody.pw_gid}
        groups = []
        try:
            kvm_gid = grp.getgrnam("kvm").gr_gid
            groups, gids = ["--groups=%d" % kvm_gid], gids | {kvm_gid}
        except KeyError:
            pass
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        prefix = ["setpriv", "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid] + \
            (groups or ["--clear-groups"])
        if subprocess.run(prefix + ["test", "-x", amber_bin]).returncode != 0:
            pytest.skip("nobody cannot run %s (a parent directory is closed to it)" % amber_bin)
    return prefix, uid, gids


@pytest.fixture
def embed(amber_bin):
    """(run, root, kvm): run(args) runs virsh on a private embedded driver."""
    why = qemu_driver_missing()
    if why:
        pytest.skip(why)
    root = tempfile.mkdtemp(prefix="amber-libvirt-")
    prefix, uid, gids = unprivileged(root, amber_bin)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": root, "LC_ALL": "C"}

    def run(args):
        return subprocess.run(prefix + ["virsh", "-q", "-c", "qemu:///embed?root=%s" % root]
                              + list(args), capture_output=True, text=True, timeout=180,
                              env=env)

    yield run, root, kvm_usable_by(uid, gids)
    shutil.rmtree(root, ignore_errors=True)


def probed_caps(root):
    files = glob.glob(os.path.join(root, "cache", "qemu", "capabilities", "*.xml"))
    assert len(files) == 1, files
    return ET.parse(files[0]).getroot()


def test_domcapabilities(embed, amber_bin):
    run, root, kvm = embed
    r = run(["domcapabilities", "--emulatorbin", amber_bin, "--arch", "x86_64",
             "--virttype", "kvm"])

    # What libvirt learnt from the probe (written only when the probe succeeded).
    caps = probed_caps(root)
    assert caps.findtext("emulator") == amber_bin
    assert caps.findtext("version") == "7002000"        # QEMU 7.2.0's QMP
    assert caps.findtext("package").startswith("amber-")
    assert caps.findtext("arch") == "x86_64"
    machines = caps.findall("machine")
    pc = [m for m in machines if m.get("name") == "pc-i440fx-7.2"]
    assert len(pc) == 1 and pc[0].get("alias") == "pc" and pc[0].get("maxCpus") == "8"
    assert pc[0].get("default") == "yes" and pc[0].get("defaultRAMid") == "pc.ram"
    assert [c.get("name") for c in caps.findall("cpu")][:1] == ["host"]
    flags = {f.get("name") for f in caps.findall("flag")}
    assert {"isa-serial", "memory-backend-memfd"} <= flags
    # Only what amber has: no USB, no virtio, no VGA, no TPM.
    assert not flags & {"piix3-usb-uhci", "virtio-blk-pci", "device-video-primary",
                        "VGA", "tpm-tis", "seccomp-sandbox"}

    if kvm:
        assert r.returncode == 0, r.stderr
        dom = ET.fromstring(r.stdout)
        assert dom.findtext("path") == amber_bin
        assert dom.findtext("domain") == "kvm"
        assert dom.findtext("machine") == "pc-i440fx-7.2"
        assert dom.findtext("arch") == "x86_64"
        assert dom.find("vcpu").get("max") == "8"
    else:
        # The probe succeeded; libvirt refuses kvm only because this host has none.
        assert caps.findtext("kvmVersion") == "0"
        assert r.returncode == 1
        assert ("Emulator '%s' does not support virt type 'kvm'" % amber_bin) in r.stderr, \
            r.stderr


def probe_log(root):
    """libvirt's log of the probe's amber (its stderr before it daemonized), if any."""
    text = ""
    for path in glob.glob(os.path.join(root, "**", "*.log"), recursive=True):
        with open(path, errors="replace") as f:
            text += f.read()
    return text


def test_probe_leaves_no_amber_running(embed, amber_bin):
    run, root, _ = embed
    run(["domcapabilities", "--emulatorbin", amber_bin, "--virttype", "kvm"])
    probed_caps(root)
    left = subprocess.run(["pgrep", "-f", "%s .*%s" % (amber_bin, root)],
                          capture_output=True, text=True)
    assert left.stdout == "", "amber still running after the probe: %s" % left.stdout
    vmmod.no_sanitizer_report(probe_log(root))
