#!/usr/bin/env python3
"""Drives one live mirror through a storage daemon's QMP monitor for bench/mirror.sh and prints
its timings: "ready=S complete=S" (seconds from blockdev-mirror to BLOCK_JOB_READY and to
BLOCK_JOB_COMPLETED after block-job-complete), and with --fio also "iops=N" (fio's write IOPS
into the source, through the daemon's NBD export, while the copy runs).

Both images are opened with cache.direct=on (what libvirt's cache=none gives a guest) and the
daemon's default AIO; the job's arguments are the same for both daemons.

Usage: mirror_driver.py SOCKET SRC DST [--fio RUNTIME_S NBD_SOCKET]
"""
import json
import socket
import subprocess
import sys
import time


class Qmp:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(600)
        self.sock.connect(path)
        self.buf = b""
        self.read()  # greeting
        self.call("qmp_capabilities")

    def read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, command, **arguments):
        self.sock.sendall(json.dumps({"execute": command, "arguments": arguments}).encode() + b"\n")
        while True:
            msg = self.read()
            if "error" in msg:
                raise RuntimeError(f"{command}: {msg['error']['desc']}")
            if "return" in msg:
                return msg["return"]
            self.check_event(msg)

    def wait_event(self, name):
        while True:
            msg = self.read()
            self.check_event(msg)
            if msg.get("event") == name:
                return msg

    @staticmethod
    def check_event(msg):
        if msg.get("event") == "BLOCK_JOB_ERROR":
            raise RuntimeError(f"job error: {msg['data']}")


def node(name, filename):
    return {"driver": "qcow2", "node-name": name,
            "file": {"driver": "file", "filename": filename, "cache": {"direct": True}},
            "cache": {"direct": True}}


def main():
    sock, src, dst = sys.argv[1:4]
    fio_runtime = None
    if len(sys.argv) == 7 and sys.argv[4] == "--fio":
        fio_runtime, nbd_sock = int(sys.argv[5]), sys.argv[6]
    qmp = Qmp(sock)
    qmp.call("blockdev-add", **node("src", src))
    qmp.call("blockdev-add", **node("dst", dst))
    fio = None
    if fio_runtime is not None:
        qmp.call("nbd-server-start", addr={"type": "unix", "data": {"path": nbd_sock}})
        qmp.call("block-export-add", type="nbd", id="e", **{"node-name": "src"}, name="src",
                 writable=True)
        fio = subprocess.Popen(
            ["fio", "--name=guest", "--ioengine=nbd", f"--uri=nbd+unix:///src?socket={nbd_sock}",
             "--rw=randwrite", "--bs=4k", "--iodepth=16", "--size=8g", "--time_based",
             f"--runtime={fio_runtime}", "--randseed=1", "--output-format=json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)  # fio connected and writing before the job starts
    t0 = time.monotonic()
    qmp.call("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "dst",
                                   "sync": "full"})
    qmp.wait_event("BLOCK_JOB_READY")
    ready = time.monotonic() - t0
    iops = None
    if fio is not None:
        out, err = fio.communicate(timeout=fio_runtime + 120)
        if fio.returncode != 0:
            raise RuntimeError("fio failed: " + err.decode())
        text = out.decode()
        iops = json.loads(text[text.index("{"):])["jobs"][0]["write"]["iops"]
    qmp.call("block-job-complete", device="m")
    qmp.wait_event("BLOCK_JOB_COMPLETED")
    complete = time.monotonic() - t0
    qmp.call("quit")
    line = f"ready={ready:.3f} complete={complete:.3f}"
    if iops is not None:
        line += f" iops={iops:.0f}"
    print(line)


if __name__ == "__main__":
    main()
