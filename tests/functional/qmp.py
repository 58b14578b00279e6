"""A small QMP client for amber's tests (QEMU's wire protocol).

    c = Qmp.connect(path)          # reads the greeting
    c.negotiate()
    c.cmd("query-status")          # -> the reply dict ({"return": ...} or {"error": ...})
    c.ok("stop")                   # -> the "return" value, AssertionError on error
    c.event("STOP")                # -> the first STOP event (waits for it)

Events that arrive while waiting for a reply are kept in order in
`events`.  send_raw() writes bytes as they are: the server frames by JSON
structure, not by lines.
"""
import array
import json
import os
import socket
import time


class QmpClosed(Exception):
    pass


class Qmp:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.events = []
        self.greeting = None

    @classmethod
    def connect(cls, path, timeout=10.0, greeting=True):
        """Connect to a unix socket, retrying until amber has created it."""
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s.settimeout(timeout)
        c = cls(s)
        if greeting:
            c.greeting = c.recv()
        return c

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- raw I/O ----
    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send(self, obj, fds=()):
        data = json.dumps(obj).encode() + b"\n"
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))]
            sent = self.sock.sendmsg([data], anc)
            if sent < len(data):
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)

    def recv(self, timeout=None):
        """The next message (reply or event), one per line as amber sends them."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise QmpClosed("connection closed by amber")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, timeout=None):
        """The next message that is not an event (events go to self.events)."""
        while True:
            msg = self.recv(timeout)
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    # ---- commands ----
    def cmd(self, name, args=None, id=None, fds=()):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        if id is not None:
            req["id"] = id
        self.send(req, fds)
        return self.reply()

    def ok(self, name, args=None, **kw):
        r = self.cmd(name, args, **kw)
        assert "return" in r, "%s failed: %r" % (name, r)
        return r["return"]

    def error(self, name, args=None, **kw):
        r = self.cmd(name, args, **kw)
        assert "error" in r, "%s unexpectedly succeeded: %r" % (name, r)
        return r["error"]

    def negotiate(self):
        return self.ok("qmp_capabilities")

    # ---- events ----
    def event(self, name, timeout=10.0):
        """Return (and remove) the first event called name, waiting for it."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s event within %ss (have %r)"
                                     % (name, timeout, self.events))
            try:
                msg = self.recv(timeout=left)
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(timeout)
            if "event" not in msg:
                raise AssertionError("unexpected reply while waiting for %s: %r"
                                     % (name, msg))
            self.events.append(msg)


def wait_exit(proc, timeout=10):
    """Wait for a Popen to exit; returns its status."""
    return proc.wait(timeout=timeout)


def fd_targets(pid):
    """What the process's descriptors point at (readlink of /proc/PID/fd/*)."""
    out = []
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, name)))
        except OSError:
            pass
    return out
