#!/usr/bin/env python3
"""`qblock storage-daemon` against oversized QMP input (ctest qmp_hostile_big): 1 MiB strings,
a 64 MiB line without a newline and a connection closed in the middle of it. qemu-storage-daemon
7.2 is no reference here (it takes minutes to swallow such input), so this checks qblock alone:
it answers query-version after each case, never dies, and its peak resident memory stays far
below the input's size (qblock refuses a message over 8 MiB with "JSON token size limit
exceeded", read and dropped as it arrives).

Usage: QBLOCK=path/to/qblock hostile_big.py
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

# Peak RSS allowed (the input is 64 MiB); sanitizer builds set a larger one.
LIMIT_KB = int(os.environ.get("QMP_RSS_LIMIT_KB", 48 * 1024))


def peak_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1])
    return 0


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(60)
        self.s.connect(path)
        self.buf = b""
        self.line()  # greeting

    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError("daemon closed the connection")
            self.buf += d
        l, self.buf = self.buf.split(b"\n", 1)
        return json.loads(l)

    def ask(self, data):
        """Sends data and then a query-version with id "sync"; returns the replies before it."""
        # Sent from a thread: a large input may get many replies before it is all sent.
        sender = threading.Thread(target=self.s.sendall,
                                  args=(data + b'{"execute":"query-version","id":"sync"}\n',))
        sender.start()
        out = []
        while True:
            m = self.line()
            if m.get("id") == "sync":
                if "return" not in m:
                    raise AssertionError("sync not answered: %r" % m)
                sender.join()
                return out
            out.append(m)


def main():
    qblock = os.environ.get("QBLOCK", os.path.join(os.path.dirname(__file__),
                                                   "../../build/debug/bin/qblock"))
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "qmp.sock")
        daemon = subprocess.Popen([qblock, "storage-daemon", "--chardev",
                                   f"socket,id=m,path={sock},server=on,wait=off",
                                   "--monitor", "chardev=m"])
        try:
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            c = Conn(sock)
            c.ask(b'{"execute":"qmp_capabilities"}\n')
            mib = b"x" * (1 << 20)
            r = c.ask(b'{"execute":"query-version","id":"' + mib + b'"}\n')
            assert r == [] or r[0]["id"] == mib.decode(), r
            r = c.ask(b'{"execute":"' + mib + b'"}\n')
            assert r[0]["error"]["class"] == "CommandNotFound", r[0]["error"]["class"]
            print("1 MiB strings: answered")
            big = b'{"execute":"query-version","id":"' + b"x" * (64 << 20)
            r = c.ask(big + b'"}\n')
            assert [m["error"]["desc"] for m in r] == ["JSON token size limit exceeded"], r
            print("64 MiB line: refused, then answered")
            # Each 1025th '[' passes the nesting limit: an error, and the framing starts afresh.
            r = c.ask(b"[" * (1025 * 65536) + b"\n")
            assert len(r) == 65536 and r[-1]["error"]["desc"] == "JSON nesting depth limit exceeded"
            print("64 MiB of '[': %d replies, then answered" % len(r))
            c.s.sendall(big)
            c.s.close()
            c = Conn(sock)
            c.ask(b'{"execute":"qmp_capabilities"}\n')
            print("closed in a 64 MiB line: new connection answered")
            kb = peak_kb(daemon.pid)
            print("peak RSS %d KiB (limit %d)" % (kb, LIMIT_KB))
            assert kb < LIMIT_KB
            c.s.sendall(b'{"execute":"quit"}\n')
            c.line()
            assert daemon.wait(timeout=10) == 0
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
