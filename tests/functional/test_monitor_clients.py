"""Monitor clients that misbehave, under -machine none (no guest, runs anywhere).

A client on one monitor must not take the VMM from the others: one that
writes without pause still lets another's `quit` through (work handed to
the main loop runs at default priority, not idle), and one that stops
reading gets whole messages or none once it reads again (a cut reply
would run into the next and leave its JSON parser lost).
"""
import json
import socket
import threading
import time

from qmp import Qmp
from test_qemu_cli import none_vm   # noqa: F401  (a fixture)


def test_flooding_client_does_not_starve_quit(none_vm, tmp_path):
    a, b = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    p = none_vm(["-qmp", "unix:%s,server=on,wait=off" % a,
                 "-qmp", "unix:%s,server=on,wait=off" % b])
    stop = threading.Event()
    with Qmp.connect(a) as flood, Qmp.connect(b) as c:
        flood.negotiate()
        c.negotiate()

        def pour():
            blank = b" " * 65536       # whitespace: no reply, so nothing to read
            try:
                while not stop.is_set():
                    flood.sock.sendall(blank)
            except OSError:
                pass                     # amber went away: the point of the test

        t = threading.Thread(target=pour, daemon=True)
        t.start()
        time.sleep(0.5)
        c.ok("quit")
        try:
            assert p.wait(timeout=15) == 0
        finally:
            stop.set()
            t.join(timeout=15)


def test_slow_reader_gets_whole_replies(none_vm, tmp_path):
    path = str(tmp_path / "q.sock")
    none_vm(["-qmp", "unix:%s,server=on,wait=off" % path])
    s = Qmp.connect(path, greeting=False).sock
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b'{"execute": "qmp_capabilities"}\n')
    # Big replies, many more than the socket and amber's queue hold, not read meanwhile.
    n = 400
    for i in range(n):
        s.sendall(json.dumps({"execute": "query-commands", "id": i}).encode() + b"\n")
    time.sleep(2)
    s.sendall(json.dumps({"execute": "query-status", "id": "last"}).encode() + b"\n")
    data, lines = b"", []
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if b'"id": "last"' in data and data.endswith(b"\n"):
                break
    except socket.timeout:
        pass
    s.close()
    ids = []
    for line in data.decode().splitlines():
        msg = json.loads(line)          # a cut message would not parse
        if "id" in msg:
            ids.append(msg["id"])
    # Some replies were dropped whole; those that came are complete and in order.
    numbered = [i for i in ids if isinstance(i, int)]
    assert numbered == sorted(numbered) and 0 < len(numbered) < n, len(numbered)
