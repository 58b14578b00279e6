"""libvirt's daemon runs a domain on amber: define, start, console, suspend, resume,
save (domjobinfo asked while it runs), restore, a live external snapshot, amber's
background snapshot through qemu-monitor-command, destroy.

The test starts Debian's libvirtd itself, unprivileged (as nobody when run as root,
with /dev/kvm's group), in session mode with every directory it uses under a private
root (HOME and XDG_*), and talks to it with `virsh -c qemu:///session`. A daemon,
not the embedded driver of test_libvirt.py, so that one virsh can ask `domjobinfo`
while another waits for `save`.

Every restored guest is dumped paused (`qemu-monitor-command --hmp pmemsave`) and must
pass the wave invariant, as must amber's own snapshot image.  Without /dev/kvm libvirt
probes amber and then refuses the kvm domain, which is checked; the lifecycle needs KVM.
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from test_libvirt import kvm_usable_by, qemu_driver_missing, unprivileged
from test_saverestore import amber_img, wavecheck

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "amber-test"
MEM_MIB = 512


class Daemon:
    def __init__(self, root, prefix, env, kvm):
        self.root, self.prefix, self.env, self.kvm = root, prefix, env, kvm
        self.proc = None

    def command(self, *args):
        return self.prefix + ["virsh", "-q", "-c", "qemu:///session"] + [str(a) for a in args]

    def virsh(self, *args, check=True, timeout=300):
        p = subprocess.run(self.command(*args), capture_output=True, text=True,
                           timeout=timeout, env=self.env)
        if check:
            assert p.returncode == 0, "virsh %s: %s%s" % (" ".join(map(str, args)), p.stderr,
                                                          self.log())
        return p

    def state(self):
        return self.virsh("domstate", NAME).stdout.strip()

    def hmp(self, line):
        return self.virsh("qemu-monitor-command", NAME, "--hmp", line).stdout

    def log(self):
        text = ""
        for path in [os.path.join(self.root, "libvirtd.out")] + \
                glob.glob(os.path.join(self.root, "**", "*.log"), recursive=True):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    text += "\n--- %s\n%s" % (path, f.read()[-4000:])
        return text


def write(path, text, uid):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chown(os.path.dirname(path), uid, -1)
    os.chown(path, uid, -1)


@pytest.fixture
def daemon(amber_bin):
    why = qemu_driver_missing()
    if not why and not shutil.which("libvirtd"):
        why = "libvirtd is not installed (scripts/install-deps.sh installs libvirt-daemon)"
    if why:
        pytest.skip(why)
    root = tempfile.mkdtemp(prefix="amber-libvirtd-")
    os.chmod(root, 0o755)
    d = None
    try:
        prefix, uid, gids = unprivileged(root, amber_bin)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": root, "LC_ALL": "C",
               "XDG_CONFIG_HOME": os.path.join(root, "config"),
               "XDG_CACHE_HOME": os.path.join(root, "cache"),
               "XDG_RUNTIME_DIR": os.path.join(root, "run")}
        conf = os.path.join(root, "config", "libvirt")
        write(os.path.join(conf, "libvirtd.conf"),
              'log_outputs = "3:file:%s/libvirtd.log"\n' % root, uid)
        # No virtlogd: the domain's own log goes straight to a file.
        write(os.path.join(conf, "qemu.conf"), 'stdio_handler = "file"\n', uid)
        os.makedirs(env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)
        os.chown(env["XDG_RUNTIME_DIR"], uid, -1)
        d = Daemon(root, prefix, env, kvm_usable_by(uid, gids))
        with open(os.path.join(root, "libvirtd.out"), "w") as out:
            d.proc = subprocess.Popen(prefix + ["libvirtd", "-f", os.path.join(conf,
                                                                         "libvirtd.conf")],
                                      env=env, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        sock = os.path.join(env["XDG_RUNTIME_DIR"], "libvirt", "libvirt-sock")
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and d.proc.poll() is None and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(sock), "libvirtd did not start: %s" % d.log()
        yield d
    finally:
        if d and d.proc:
            if d.proc.poll() is None:
                names = d.virsh("list", "--name", check=False).stdout.split()
                for name in names:
                    d.virsh("destroy", name, check=False)
                d.proc.terminate()
            d.proc.wait(timeout=30)
        left = subprocess.run(["pgrep", "-f", "%s .*%s" % (amber_bin, NAME)],
                              capture_output=True, text=True).stdout
        shutil.rmtree(root, ignore_errors=True)
        assert left == "", "amber still running after libvirtd stopped: %s" % left


def domain_xml(d, amber_bin):
    with open(os.path.join(HERE, "libvirt-domain.xml")) as f:
        text = f.read()
    text = text.replace("@NAME@", NAME).replace("@MEM_MIB@", str(MEM_MIB))
    text = text.replace("@EMULATOR@", amber_bin)
    path = os.path.join(d.root, "domain.xml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)
    return path


def test_daemon_probes_and_refuses_kvm_without_it(daemon, amber_bin):
    """Without /dev/kvm: libvirt probes amber, then refuses a kvm domain, saying why."""
    if daemon.kvm:
        pytest.skip("this host has KVM: test_lifecycle runs the domain")
    r = daemon.virsh("define", domain_xml(daemon, amber_bin), check=False)
    assert r.returncode == 1
    assert "Emulator '%s' does not support virt type 'kvm'" % amber_bin in r.stderr, r.stderr
    caps = glob.glob(os.path.join(daemon.root, "cache", "libvirt", "qemu", "cache",
                                  "capabilities", "*.xml"))
    assert len(caps) == 1, caps
    probed = ET.parse(caps[0]).getroot()
    assert probed.findtext("emulator") == amber_bin
    assert probed.findtext("version") == "7002000"
    assert daemon.virsh("list", "--all", "--name").stdout.strip() == ""


def read_console(tty, needle, timeout=60):
    fd = os.open(tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    got = b""
    deadline = time.monotonic() + timeout
    try:
        while needle not in got and time.monotonic() < deadline:
            try:
                got += os.read(fd, 4096)
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        os.close(fd)
    return got.decode(errors="replace")


def dump_and_check(d, name):
    """The paused guest's RAM, through libvirt's passthrough, holds the wave invariant."""
    assert d.state() == "paused"
    path = os.path.join(d.root, name)
    d.hmp("pmemsave 0 %d %s" % (MEM_MIB << 20, path))
    assert os.path.getsize(path) == MEM_MIB << 20
    res = wavecheck(path, MEM_MIB)
    os.unlink(path)
    return res


def save_watching_jobs(d, path):
    """virsh save, with domjobinfo asked from a second virsh while it runs; the
    job's statistics as seen running, or once completed when the save was
    over before a second virsh got to ask."""
    p = subprocess.Popen(d.command("save", NAME, path), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=d.env)
    seen = []
    while p.poll() is None:
        r = d.virsh("domjobinfo", NAME, check=False)
        if r.returncode == 0 and re.search(r"Job type:\s+Unbounded", r.stdout):
            seen.append(r.stdout)
    out, err = p.communicate()
    assert p.returncode == 0, err + d.log()
    if not seen:
        done = d.virsh("domjobinfo", NAME, "--completed").stdout
        assert re.search(r"Job type:\s+Completed", done), done
        seen.append(done)
    return seen


def test_lifecycle(daemon, amber_bin, tmp_path):
    d = daemon
    if not d.kvm:
        pytest.skip("this host has no /dev/kvm usable by libvirt's user: amber cannot run "
                    "the domain")
    d.virsh("define", domain_xml(d, amber_bin))
    d.virsh("start", NAME)
    assert d.state() == "running"
    info = d.virsh("dominfo", NAME).stdout
    assert re.search(r"CPU\(s\):\s+2", info) and re.search(r"State:\s+running", info), info

    # COM1 on a pty: libvirt learnt its path from query-chardev; the guest reports there.
    tty = d.virsh("ttyconsole", NAME).stdout.strip()
    assert re.match(r"/dev/pts/\d+$", tty), tty
    assert "vcpu=1 " in read_console(tty, b"vcpu=1 ")

    d.virsh("suspend", NAME)
    assert d.state() == "paused"
    d.virsh("resume", NAME)
    assert d.state() == "running"

    save = os.path.join(d.root, "saved.img")
    seen = save_watching_jobs(d, save)
    assert d.state() == "shut off"
    assert re.search(r"Operation:\s+Save", seen[-1]), seen[-1]
    assert re.search(r"Data processed:", seen[-1]), seen[-1]

    d.virsh("restore", save, "--paused")
    dump_and_check(d, "restored.raw")
    d.virsh("resume", NAME)
    assert d.state() == "running"

    # libvirt's live snapshot: precopy into a file while the guest runs.
    mem = os.path.join(d.root, "snap1.mem")
    d.virsh("snapshot-create-as", NAME, "snap1", "--live", "--no-metadata",
            "--memspec", "file=%s,snapshot=external" % mem)
    assert d.state() == "running"

    # amber's background snapshot, asked for through the monitor passthrough.
    bg = os.path.join(d.root, "bg.img")
    d.hmp("migrate_set_capability background-snapshot on")
    d.hmp("migrate -d file:%s" % bg)
    deadline = time.monotonic() + 120
    status = ""
    while time.monotonic() < deadline:
        status = d.hmp("info migrate")
        if re.search(r"Migration status: (completed|failed|cancelled)", status):
            break
        time.sleep(0.1)
    assert "Migration status: completed" in status, status
    d.hmp("migrate_set_capability background-snapshot off")
    assert d.state() == "running"
    assert amber_img("verify", bg).stdout.strip() == "OK"
    out = str(tmp_path / "bg")
    amber_img("extract-ram", bg, out)
    wavecheck(os.path.join(out, "physmem.raw"), MEM_MIB)
    shutil.rmtree(out)

    # The live snapshot's memory is a save image: it restores.
    d.virsh("destroy", NAME)
    d.virsh("restore", mem, "--paused")
    dump_and_check(d, "snapshot.raw")
    d.virsh("destroy", NAME)
    assert d.state() == "shut off"
    d.virsh("undefine", NAME)
    assert d.virsh("list", "--all", "--name").stdout.strip() == ""
