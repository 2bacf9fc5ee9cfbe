#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/nbd_server_fuzz.cc: client byte streams that reach every
option and command of the server, so the fuzzer starts past the handshake."""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQUEST = 0x25609513


def option(opt, data=b""):
    return struct.pack(">QII", IHAVEOPT, opt, len(data)) + data


def info_request(name, infos=()):
    return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + b"".join(
        struct.pack(">H", i) for i in infos)


def meta(name, queries):
    body = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
    return body + b"".join(struct.pack(">I", len(q)) + q for q in queries)


def request(cmd, offset=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQUEST, flags, cmd, cookie, offset, length) + payload


def commands():
    return b"".join([
        request(1, 0, 4096, cookie=1, payload=b"\xab" * 4096),      # write
        request(1, 8192, 4096, flags=1, cookie=2, payload=bytes(4096)),  # FUA, zeros
        request(0, 0, 16384, cookie=3),                              # read (sparse)
        request(0, 0, 4096, flags=4, cookie=4),                      # read DF
        request(7, 0, 1 << 20, cookie=5),                            # block status
        request(7, 0, 1 << 20, flags=8, cookie=6),                   # REQ_ONE
        request(4, 65536, 65536, cookie=7),                          # trim
        request(6, 131072, 65536, flags=16, cookie=8),               # fast zero
        request(6, 196608, 4096, flags=2, cookie=9),                 # no hole
        request(5, 0, 65536, cookie=10),                             # cache
        request(3, cookie=11),                                       # flush
        request(0, (1 << 20) - 512, 1024, cookie=12),                # past the end
        request(9, cookie=13),                                       # unknown command
        request(2, cookie=14),                                       # disconnect
    ])


def main(out):
    os.makedirs(out, exist_ok=True)
    hello = struct.pack(">I", 3)
    seeds = {
        "go-structured": hello + option(8) + option(10, meta(b"fuzz", [
            b"base:allocation", b"qemu:allocation-depth"])) + option(7, info_request(
                b"fuzz", (0, 1, 2, 3))) + commands(),
        "export-name-simple": hello + option(1, b"fuzz") + commands(),
        "options": hello + option(3) + option(3, b"x") + option(6, info_request(b"fuzz", (1, 2)))
        + option(6, info_request(b"nope")) + option(9, meta(b"fuzz", [])) + option(
            9, meta(b"fuzz", [b"base:", b"qemu:"])) + option(10, meta(b"fuzz", [b"x"]))
        + option(99, b"junk") + option(5) + option(2),
        "bad-lengths": hello + option(6, struct.pack(">I", 1000) + b"fuzz") + option(
            9, struct.pack(">II", 4, 7) + b"fuzz") + option(7, info_request(b"fuzz"))
        + request(0, 0, 33554433) + request(1, 1 << 62, 512, payload=bytes(512)),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                           "corpus", "nbd_server"))
