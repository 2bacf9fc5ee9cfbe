#!/usr/bin/env python3
"""A small QMP client for the tests: runs a script of QMP inputs against a monitor socket and
prints every input and every reply and event, normalised so that the transcripts of
qemu-storage-daemon and `qblock storage-daemon` can be compared (keys sorted; timestamps,
versions, auto-generated node names and allocated sizes replaced; with QMP_JOB_PROGRESS=any
also a job's progress figures, which depend on timing, and the count of a backup job's unnamed
copy bitmap).

Script lines (blank lines and lines starting with '#' are skipped):
  {json...}            sent as is; waits for its reply (events before it are printed too)
  raw N <bytes>        sends a Python bytes literal; waits for N replies (0: none)
  rawsync <expr>       sends the bytes a Python expression makes (b'[' * 2000 ...), then a
                       query-version with id "sync", and prints everything up to its reply:
                       whatever number of replies the bytes got, the monitor still answers
                       (runs of identical replies are printed once with their count, long
                       lines shortened)
  shell <command>      runs a shell command ($DIR is the test directory) and prints its output
  wait EVENT           prints messages until the event EVENT has arrived (a job's progress)
  bitmaps NODE         query-named-block-nodes, of which only NODE's dirty-bitmaps are printed
                       (the rest, such as file sizes, depends on each engine's allocation)
  reconnect            closes the connection and opens a new one (greeting printed)
  close                closes the connection without waiting (a client that goes away)

Usage: qmp_client.py SOCKET SCRIPT
"""
import ast
import json
import os
import re
import socket
import subprocess
import sys
import time


def normalise(msg):
    def walk(v, key=None):
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if k == "timestamp":
                    out[k] = "TIMESTAMP"
                elif k in ("actual-size",):
                    out[k] = "SIZE"
                elif k in ("offset", "current-progress") and os.environ.get("QMP_JOB_PROGRESS") == "any":
                    out[k] = "PROGRESS"
                elif (k == "count" and "name" not in v and v.get("recording") is False
                      and os.environ.get("QMP_JOB_PROGRESS") == "any"):
                    out[k] = "PROGRESS"  # a backup job's copy bitmap: what is still to copy
                else:
                    out[k] = walk(x, k)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, str):
            if os.environ.get("DIR"):
                v = v.replace(os.environ["DIR"], "$DIR")
            return re.sub(r"#block[0-9]+", "#blockN", v)
        return v

    msg = walk(msg)
    if "QMP" in msg:
        msg["QMP"]["version"] = "VERSION"
    ret = msg.get("return")
    if isinstance(ret, dict) and "qemu" in ret and "package" in ret:
        msg["return"] = "VERSION"
    return json.dumps(msg, sort_keys=True)


RETRY_RC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib",
                        "qemu_img_retry.rc")

class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(20)
        self.sock.connect(path)
        self.buf = b""

    def read_message(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode())

    def replies(self, count):
        """Prints messages until `count` replies (return or error) have arrived."""
        seen = 0
        while seen < count:
            msg = self.read_message()
            print("<<< " + normalise(msg))
            if "return" in msg or "error" in msg:
                seen += 1

    def bitmaps(self, node):
        """Prints the dirty-bitmaps of `node` from query-named-block-nodes (events before the
        reply are printed as they come)."""
        self.send(b'{"execute":"query-named-block-nodes"}\n')
        while True:
            msg = self.read_message()
            if "return" in msg:
                found = [n.get("dirty-bitmaps", []) for n in msg["return"]
                         if n.get("node-name") == node]
                print("<<< " + normalise({"node-name": node,
                                           "dirty-bitmaps": found[0] if found else None}))
                return
            print("<<< " + normalise(msg))

    def sync(self):
        """Sends query-version with id "sync" and prints the messages up to its reply."""
        self.send(b'{"execute":"query-version","id":"sync"}\n')
        last, count = None, 0

        def flush():
            if last is not None:
                print("<<< " + last + (" (x%d)" % count if count > 1 else ""))

        while True:
            msg = self.read_message()
            if msg.get("id") == "sync" and "return" in msg:
                flush()
                print("<<< sync")
                return
            text = normalise(msg)
            if len(text) > 300:
                text = text[:200] + "...(%d chars)" % len(text)
            if text == last:
                count += 1
            else:
                flush()
                last, count = text, 1

    def wait_event(self, name):
        """Prints messages until the event `name` has arrived."""
        while True:
            msg = self.read_message()
            print("<<< " + normalise(msg))
            if msg.get("event") == name:
                return

    def send(self, data):
        self.sock.sendall(data)


def main():
    sys.setrecursionlimit(20000)  # replies echo ids nested 1023 deep
    path, script = sys.argv[1], sys.argv[2]
    client = Client(path)
    client.replies(0)
    print("<<< " + normalise(client.read_message()))
    for line in open(script):
        line = line.rstrip("\n").replace("$DIR", os.environ.get("DIR", ""))
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("raw "):
            _, count, literal = line.split(" ", 2)
            data = ast.literal_eval(literal)
            print(">>> raw " + (literal if len(literal) < 100 else literal[:60] + "...") )
            client.send(data)
            client.replies(int(count))
        elif line.startswith("rawsync "):
            expr = line[len("rawsync "):]
            data = eval(expr, {"__builtins__": {}})
            print(">>> rawsync " + (expr if len(expr) < 100 else expr[:60] + "..."))
            client.send(data)
            client.sync()
        elif line.startswith("shell "):
            command = line[len("shell "):]
            print("$ " + command.replace(os.environ.get("DIR") or "//none", "$DIR"))
            # With qemu-img retried past QEMU's LUKS calibration flake (tests/lib).
            res = subprocess.run(["bash", "-c", '. "$0"; ' + command, RETRY_RC],
                                 capture_output=True, text=True)
            out = res.stdout + res.stderr
            if os.environ.get("DIR"):
                out = out.replace(os.environ["DIR"], "$DIR")
            sys.stdout.write(out)
            print("[exit %d]" % res.returncode)
        elif line.startswith("wait "):
            print("--- wait " + line[5:])
            client.wait_event(line[5:].strip())
        elif line.startswith("bitmaps "):
            print(">>> " + line)
            client.bitmaps(line[len("bitmaps "):].strip())
        elif line == "reconnect":
            if client is not None:
                client.sock.close()
            print("--- reconnect")
            client = Client(path)
            print("<<< " + normalise(client.read_message()))
        elif line == "close":
            client.sock.close()
            print("--- close")
            client = None
        else:
            print(">>> " + line.replace(os.environ.get("DIR") or "//none", "$DIR"))
            client.send(line.encode() + b"\n")
            client.replies(1)
        sys.stdout.flush()
    if client is not None:
        # After "quit" the daemon closes the connection.
        try:
            while True:
                msg = client.read_message()
                print("<<< " + normalise(msg))
        except (EOFError, OSError):
            pass


if __name__ == "__main__":
    main()
