"""HMP, the text monitor, over stdio and over a unix socket."""
import os
import socket
import subprocess
import time

import vm as vmmod
from qmp import Qmp

PROMPT = b"(amber) "


def run_stdio(tmp_path, lines, extra=()):
    """Feed lines to -monitor stdio; returns (exit status, output)."""
    args = [vmmod.AMBER, "-m", "64", "-monitor", "stdio",
            "-serial", "file:%s" % (tmp_path / "serial.log")] + list(extra)
    p = subprocess.run(args, input="".join(l + "\n" for l in lines).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace")


def test_stdio_session(tmp_path, amber_bin, kvm):
    dump = tmp_path / "page.bin"
    rc, out = run_stdio(tmp_path, [
        "info status", "stop", "info status", "info version", "info cpus",
        "pmemsave 0x0 4096 %s" % dump, "pmemsave 0 zz %s" % dump, "nonsense", "help",
        "c", "info status", "q"])
    assert rc == 0, out
    assert out.startswith("amber ") and "monitor - type 'help' for more information" in out
    blocks = out.split("(amber) ")
    # banner, then one output block per line of input.
    assert blocks[1] == "VM status: running\r\n"
    assert blocks[2] == ""
    assert blocks[3] == "VM status: paused\r\n"
    assert blocks[4].startswith("7.2.0 (amber-0.1.0)")
    assert blocks[5].startswith("* CPU #0: thread_id=")
    assert blocks[6] == ""
    assert os.path.getsize(dump) == 4096
    assert "SIZE must be a number" in blocks[7]
    assert blocks[8] == "unknown command: 'nonsense'\r\n"
    for word in ("pmemsave ADDR SIZE FILE", "cont|c", "quit|q", "stop", "system_reset"):
        assert word in blocks[9]
    assert blocks[11] == "VM status: running\r\n"


def test_stdio_prelaunch_and_usage(tmp_path, amber_bin, kvm):
    rc, out = run_stdio(tmp_path, ["info status", "pmemsave 0", "info", "quit"],
                        extra=["-S"])
    assert rc == 0, out
    blocks = out.split("(amber) ")
    assert blocks[1] == "VM status: paused (prelaunch)\r\n"
    assert blocks[2] == "Usage: pmemsave ADDR SIZE FILE\r\n"
    assert "info status" in blocks[3] and "info version" in blocks[3]


class Hmp:
    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX)
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.banner = self.until_prompt()

    def until_prompt(self):
        buf = b""
        while not buf.endswith(PROMPT):
            chunk = self.sock.recv(4096)
            assert chunk, "connection closed; got %r" % buf
            buf += chunk
        return buf[:-len(PROMPT)].decode()

    def run(self, line, eol="\n"):
        self.sock.sendall((line + eol).encode())
        return self.until_prompt()


def test_socket_session(tmpvm):
    vm = tmpvm(["-m", "64"])
    hp, qp = vm.path("hmp.sock"), vm.path("qmp.sock")
    vm.args += ["-monitor", "unix:%s,server=on,wait=off" % hp,
                "-qmp", "unix:%s,server=on,wait=off" % qp]
    vm.start()
    q = Qmp.connect(qp)
    q.negotiate()
    h = Hmp(hp)
    assert "amber 0.1.0 monitor" in h.banner
    assert h.run("info status") == "VM status: running\r\n"
    assert h.run("stop", eol="\r\n") == ""
    q.event("STOP")                    # HMP calls the same handler: same event
    assert q.ok("query-status")["status"] == "paused"
    assert h.run("info status") == "VM status: paused\r\n"
    assert h.run("") == ""
    assert h.run("cont") == ""
    q.event("RESUME")
    assert "Error" in h.run("x" * 5000)            # over-long line refused
    assert h.run("info status") == "VM status: running\r\n"
    # A second client after the first left gets a fresh banner.
    h.sock.close()
    h = Hmp(hp)
    assert "monitor - type 'help'" in h.banner
    h.sock.sendall(b"quit\n")
    assert vm.wait(timeout=10) == 0
