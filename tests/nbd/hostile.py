#!/usr/bin/env python3
"""Hostile raw-socket NBD client: malformed, oversized, truncated and abusive traffic.

Starts the server itself ($NBD_SERVER, default qemu-nbd) on a fresh 64 MiB qcow2 on a Unix
socket (-t -e 64 --fork --pid-file), runs the cases, and after EVERY case checks that the
server process is alive and that a well-behaved client (fixed newstyle, NBD_OPT_GO, a
write+read round trip, NBD_CMD_DISC) still works. A shadow copy of the export's content is
kept; at the end the server gets SIGTERM and must exit 0 and remove its socket,
`qemu-img check` must be clean and the image must hold exactly the shadow's bytes. A second
run with -r checks that writes are refused with EPERM (EINVAL accepted unless NBD_STRICT).

Each case accepts every outcome the NBD protocol allows (an error reply or a disconnect,
as noted per case) and fails only on server death, a hang (socket timeout), a reply that
breaks the protocol, or data corruption.

Environment:
  NBD_SERVER        server command (split on blanks), default "qemu-nbd"
  NBD_TIMEOUT       seconds any single wait may take (default 10)
  NBD_HOSTILE_SKIP  case names to skip, separated by commas or blanks
  NBD_HOSTILE_ONLY  run only these cases (same syntax; the setup/final checks always run)
  NBD_STRICT        if set, answers the protocol only recommends (SHOULD) become required:
                    EPERM (not EINVAL) for writes to a read-only export, ERR_INVALID for
                    LIST_META_CONTEXT before STRUCTURED_REPLY and for trailing junk in a
                    meta-context query
  NBD_KEEP          if set, keep the scratch directory (its path is printed)
Exit status: 0 when every case passed, 1 otherwise, 2 when the server could not be started.
"""

import ctypes
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SERVER = os.environ.get("NBD_SERVER", "qemu-nbd").split()
TIMEOUT = float(os.environ.get("NBD_TIMEOUT", "10"))
SKIP = set(os.environ.get("NBD_HOSTILE_SKIP", "").replace(",", " ").split())
ONLY = set(os.environ.get("NBD_HOSTILE_ONLY", "").replace(",", " ").split())
STRICT = bool(os.environ.get("NBD_STRICT"))

KiB, MiB = 1 << 10, 1 << 20
SIZE = 64 * MiB

# Handshake.
NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR = 1 << 31
ERR_UNSUP, ERR_POLICY, ERR_INVALID, ERR_PLATFORM = REP_ERR + 1, REP_ERR + 2, REP_ERR + 3, REP_ERR + 4
ERR_TLS_REQD, ERR_UNKNOWN, ERR_SHUTDOWN = REP_ERR + 5, REP_ERR + 6, REP_ERR + 7
ERR_BLOCK_SIZE_REQD, ERR_TOO_BIG = REP_ERR + 8, REP_ERR + 9
INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE = 0, 1, 2, 3
REP_NAMES = {REP_ACK: "ACK", REP_SERVER: "SERVER", REP_INFO: "INFO", REP_META_CONTEXT: "META_CONTEXT",
             ERR_UNSUP: "ERR_UNSUP", ERR_POLICY: "ERR_POLICY", ERR_INVALID: "ERR_INVALID",
             ERR_PLATFORM: "ERR_PLATFORM", ERR_TLS_REQD: "ERR_TLS_REQD", ERR_UNKNOWN: "ERR_UNKNOWN",
             ERR_SHUTDOWN: "ERR_SHUTDOWN", ERR_BLOCK_SIZE_REQD: "ERR_BLOCK_SIZE_REQD",
             ERR_TOO_BIG: "ERR_TOO_BIG"}

# Transmission.
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF
TF_HAS_FLAGS, TF_READ_ONLY = 1, 2
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE = 0, 1, 2, 3, 4, 5
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
CMD_NAMES = {0: "READ", 1: "WRITE", 2: "DISC", 3: "FLUSH", 4: "TRIM", 5: "CACHE",
             6: "WRITE_ZEROES", 7: "BLOCK_STATUS"}
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE, F_FAST_ZERO = 1, 2, 4, 8, 16
REPLY_FLAG_DONE = 1
CHUNK_NONE, CHUNK_OFFSET_DATA, CHUNK_OFFSET_HOLE, CHUNK_BLOCK_STATUS = 0, 1, 2, 5
CHUNK_ERROR, CHUNK_ERROR_OFFSET = 32769, 32770
EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108
ERRNO_NAMES = {1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC", 75: "EOVERFLOW",
               95: "ENOTSUP", 108: "ESHUTDOWN"}

# Layout of the 64 MiB export (the shadow tracks every byte).
GUARD_A = (0, 1 * MiB)                 # known pattern, must never change
CANARY = 1 * MiB                       # health-check writes: 256 slots of 4 KiB
MISC = 2 * MiB                         # cut-off writes, DISC with a write in flight (2 MiB)
INFLIGHT = 4 * MiB                     # writes abandoned by a disconnect (4 MiB)
CONNS = 8 * MiB                        # 64 connections x 64 KiB
STALL = 12 * MiB                       # the partner of the stalled client (1 MiB)
ZEROLEN = 13 * MiB
GUARD_B = (SIZE - 1 * MiB, 1 * MiB)    # known pattern next to the end of the export


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class Hang(Exception):
    """The server did not answer within the timeout."""


class Violation(Exception):
    """The server broke the NBD protocol."""


class CaseFail(Exception):
    """The case observed something it must not accept."""


def errname(e):
    return ERRNO_NAMES.get(e, str(e))


def repname(t):
    return REP_NAMES.get(t, hex(t))


def pattern(seed, n):
    """n bytes of a deterministic, position-dependent pattern."""
    rnd = random.Random(seed)
    return rnd.randbytes(n)


def first_diff(a, b):
    n = min(len(a), len(b))
    lo = 0
    step = 1 << 16
    while lo < n and a[lo:lo + step] == b[lo:lo + step]:
        lo += step
    for i in range(lo, min(n, lo + step)):
        if a[i] != b[i]:
            return i
    return n if len(a) != len(b) else -1


class Reply:
    def __init__(self, cookie, cmd, offset, length):
        self.cookie, self.cmd, self.offset, self.length = cookie, cmd, offset, length
        self.err = 0
        self.kind = None           # "simple" or "structured"
        self.data = None           # bytes for a successful READ
        self.msg = b""
        self.extents = {}          # context id -> [(length, flags)]
        self._buf = None
        self._covered = []         # (start, end) of content chunks, relative to offset

    def __repr__(self):
        return (f"<{CMD_NAMES.get(self.cmd, self.cmd)} off={self.offset} len={self.length} "
                f"{self.kind} err={errname(self.err)}>")


class Conn:
    """One client connection with strict checking of everything the server sends."""

    def __init__(self, path, timeout=None):
        self.timeout = TIMEOUT if timeout is None else timeout
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(self.timeout)
        try:
            self.s.connect(path)
        except socket.timeout:
            self.s.close()
            raise Hang("connect() timed out")
        self.hflags = 0
        self.structured = False
        self.size = None
        self.tflags = 0
        self.contexts = {}          # id -> name
        self.pending = {}           # cookie -> (cmd, offset, length, flags)
        self.partial = {}           # cookie -> Reply being assembled from chunks
        self.next_cookie = random.getrandbits(32) << 16

    # --- raw I/O ---------------------------------------------------------------------------
    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.s.sendall(data)
        except socket.timeout:
            raise Hang(f"send of {len(data)} bytes blocked for {self.timeout}s")
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(f"send failed: {e}")

    def recv(self, n, what):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.s.recv(min(n - len(buf), 4 * MiB))
            except socket.timeout:
                raise Hang(f"no {what} within {self.timeout:g}s"
                           + (f" (got {len(buf)} of {n} bytes)" if buf else ""))
            except ConnectionResetError:
                raise Closed(f"connection reset while reading {what}")
            if not chunk:
                raise Closed(f"EOF while reading {what}"
                             + (f" after {len(buf)} of {n} bytes" if buf else ""))
            buf += chunk
        return bytes(buf)

    def expect_eof(self, what):
        """The server must close the connection without sending anything more."""
        try:
            data = self.s.recv(4096)
        except socket.timeout:
            raise Hang(f"server neither closed the connection nor answered ({what})")
        except ConnectionResetError:
            return
        if data:
            raise CaseFail(f"expected a disconnect ({what}), server sent {len(data)} bytes: "
                           f"{data[:32].hex()}")

    # --- handshake -------------------------------------------------------------------------
    def greet(self):
        magic, ihave, hflags = struct.unpack(">QQH", self.recv(18, "server greeting"))
        if magic != NBDMAGIC:
            raise Violation(f"bad NBDMAGIC 0x{magic:x}")
        if ihave != IHAVEOPT:
            raise Violation(f"not newstyle: 0x{ihave:x}")
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise Violation("server does not offer fixed newstyle")
        if hflags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
            raise Violation(f"unknown handshake flags 0x{hflags:x}")
        self.hflags = hflags

    def send_client_flags(self, cflags=None):
        if cflags is None:
            cflags = FLAG_FIXED_NEWSTYLE | (self.hflags & FLAG_NO_ZEROES)
        self.cflags = cflags
        self.send(struct.pack(">I", cflags))

    def send_opt(self, opt, data=b"", length=None):
        if length is None:
            length = len(data)
        self.send(struct.pack(">QII", IHAVEOPT, opt, length) + data)

    def opt_reply(self, opt):
        """One option reply; opt None skips the check of the echoed option."""
        magic, o, rtype, ln = struct.unpack(">QIII", self.recv(20, "option reply"))
        if magic != OPT_REPLY_MAGIC:
            raise Violation(f"bad option reply magic 0x{magic:x}")
        if opt is not None and o != opt:
            raise Violation(f"option reply echoes option {o}, expected {opt}")
        if ln > 64 * MiB:
            raise Violation(f"option reply of {ln} bytes")
        data = self.recv(ln, f"option reply payload ({repname(rtype)})") if ln else b""
        if rtype == REP_ACK and ln:
            raise Violation(f"NBD_REP_ACK with {ln} bytes of payload")
        if rtype == REP_SERVER and (ln < 4 or struct.unpack(">I", data[:4])[0] > ln - 4):
            raise Violation("malformed NBD_REP_SERVER")
        if rtype == REP_META_CONTEXT and ln < 4:
            raise Violation("malformed NBD_REP_META_CONTEXT")
        if rtype == REP_INFO and ln < 2:
            raise Violation("malformed NBD_REP_INFO")
        if not rtype & REP_ERR and rtype not in (REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT):
            raise Violation(f"unknown option reply type {rtype}")
        return rtype, data

    def opt_final(self, opt):
        """Replies to one option up to the final one (ACK or an error); returns (type, list)."""
        items = []
        while True:
            rtype, data = self.opt_reply(opt)
            if rtype == REP_ACK or rtype & REP_ERR:
                return rtype, items
            if rtype == REP_SERVER and opt != OPT_LIST:
                raise Violation(f"NBD_REP_SERVER in reply to option {opt}")
            if rtype == REP_META_CONTEXT and opt not in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
                raise Violation(f"NBD_REP_META_CONTEXT in reply to option {opt}")
            if rtype == REP_INFO and opt not in (OPT_INFO, OPT_GO):
                raise Violation(f"NBD_REP_INFO in reply to option {opt}")
            items.append((rtype, data))

    def negotiate_structured(self):
        self.send_opt(OPT_STRUCTURED_REPLY)
        rtype, _ = self.opt_final(OPT_STRUCTURED_REPLY)
        if rtype != REP_ACK:
            raise CaseFail(f"NBD_OPT_STRUCTURED_REPLY answered {repname(rtype)}")
        self.structured = True

    def set_meta(self, name=b"", queries=(b"base:allocation",)):
        data = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
        for q in queries:
            data += struct.pack(">I", len(q)) + q
        self.send_opt(OPT_SET_META_CONTEXT, data)
        rtype, items = self.opt_final(OPT_SET_META_CONTEXT)
        if rtype != REP_ACK:
            raise CaseFail(f"NBD_OPT_SET_META_CONTEXT answered {repname(rtype)}")
        self.contexts = {}
        for _, d in items:
            cid = struct.unpack(">I", d[:4])[0]
            if cid in self.contexts:
                raise Violation(f"metadata context id {cid} given twice")
            self.contexts[cid] = d[4:]
        if not self.contexts:
            raise CaseFail("server selected no metadata context for base:allocation")

    def go(self, name=b"", opt=OPT_GO, infos=(INFO_BLOCK_SIZE,)):
        """NBD_OPT_GO (or INFO); returns 0 on success or the error reply type."""
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        self.send_opt(opt, data)
        size = tflags = None
        while True:
            rtype, d = self.opt_reply(opt)
            if rtype & REP_ERR:
                return rtype
            if rtype == REP_INFO:
                itype = struct.unpack(">H", d[:2])[0]
                if itype == INFO_EXPORT:
                    if len(d) != 12:
                        raise Violation(f"NBD_INFO_EXPORT of {len(d)} bytes")
                    size, tflags = struct.unpack(">QH", d[2:])
                elif itype == INFO_BLOCK_SIZE and len(d) != 14:
                    raise Violation(f"NBD_INFO_BLOCK_SIZE of {len(d)} bytes")
                continue
            if rtype != REP_ACK:
                raise Violation(f"{repname(rtype)} in reply to NBD_OPT_GO/INFO")
            if size is None:
                raise Violation("NBD_REP_ACK to GO/INFO without NBD_INFO_EXPORT")
            if not tflags & TF_HAS_FLAGS:
                raise Violation(f"transmission flags 0x{tflags:x} lack NBD_FLAG_HAS_FLAGS")
            if opt == OPT_GO:
                self.size, self.tflags = size, tflags
            return 0

    def negotiate(self, structured=False, meta=False, name=b""):
        self.greet()
        self.send_client_flags()
        if structured or meta:
            self.negotiate_structured()
        if meta:
            self.set_meta(name)
        rtype = self.go(name)
        if rtype:
            raise CaseFail(f"NBD_OPT_GO answered {repname(rtype)}")
        if self.size != SIZE:
            raise CaseFail(f"export size {self.size}, expected {SIZE}")
        return self

    # --- transmission ----------------------------------------------------------------------
    def cookie(self):
        self.next_cookie += 1
        return self.next_cookie

    def request(self, cmd, offset=0, length=0, flags=0, payload=b"", cookie=None,
                magic=REQUEST_MAGIC, send=True):
        if cookie is None:
            cookie = self.cookie()
        if cmd != CMD_DISC:
            self.pending[cookie] = (cmd, offset, length, flags)
        msg = struct.pack(">IHHQQI", magic, flags, cmd, cookie, offset, length) + payload
        if send:
            self.send(msg)
            return cookie
        return cookie, msg

    def message(self):
        """Reads one reply message; returns a finished Reply or None (more chunks to come)."""
        magic = struct.unpack(">I", self.recv(4, "reply"))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv(12, "simple reply header"))
            if cookie not in self.pending:
                raise Violation(f"simple reply for unknown cookie 0x{cookie:x}")
            if cookie in self.partial:
                raise Violation("simple reply for a cookie that has structured chunks pending")
            cmd, off, ln, _ = self.pending.pop(cookie)
            if self.structured and cmd == CMD_READ:
                raise Violation("simple reply to NBD_CMD_READ after structured replies were negotiated")
            r = Reply(cookie, cmd, off, ln)
            r.kind, r.err = "simple", err
            if cmd == CMD_READ and err == 0:
                r.data = self.recv(ln, f"{ln} bytes of simple read payload") if ln else b""
            return r
        if magic != STRUCTURED_REPLY_MAGIC:
            raise Violation(f"bad reply magic 0x{magic:08x}")
        if not self.structured:
            raise Violation("structured reply chunk without NBD_OPT_STRUCTURED_REPLY")
        flags, typ, cookie, ln = struct.unpack(">HHQI", self.recv(16, "structured chunk header"))
        if cookie not in self.pending:
            raise Violation(f"structured chunk (type {typ}) for unknown cookie 0x{cookie:x}")
        cmd, off, rlen, rflags = self.pending[cookie]
        if ln > 64 * MiB + 64:
            raise Violation(f"structured chunk of {ln} bytes")
        payload = self.recv(ln, f"chunk payload (type {typ})") if ln else b""
        r = self.partial.get(cookie)
        if r is None:
            r = self.partial[cookie] = Reply(cookie, cmd, off, rlen)
            r.kind = "structured"
        name = CMD_NAMES.get(cmd, str(cmd))
        if typ == CHUNK_NONE:
            if ln:
                raise Violation("NBD_REPLY_TYPE_NONE with payload")
            if not flags & REPLY_FLAG_DONE:
                raise Violation("NBD_REPLY_TYPE_NONE without NBD_REPLY_FLAG_DONE")
        elif typ in (CHUNK_OFFSET_DATA, CHUNK_OFFSET_HOLE):
            if cmd != CMD_READ:
                raise Violation(f"content chunk in reply to {name}")
            if typ == CHUNK_OFFSET_DATA:
                if ln < 9:
                    raise Violation(f"OFFSET_DATA chunk of length {ln}")
                coff, n = struct.unpack(">Q", payload[:8])[0], ln - 8
            else:
                if ln != 12:
                    raise Violation(f"OFFSET_HOLE chunk of length {ln}")
                coff, n = struct.unpack(">QI", payload)
                if n == 0:
                    raise Violation("OFFSET_HOLE of size 0")
            if coff < off or coff + n > off + rlen:
                raise Violation(f"content chunk [{coff}, +{n}) outside the request [{off}, +{rlen})")
            rel = coff - off
            for a, b in r._covered:
                if rel < b and a < rel + n:
                    raise Violation("overlapping content chunks")
            r._covered.append((rel, rel + n))
            if (rflags & F_DF) and len(r._covered) > 1:
                raise Violation("more than one content chunk for a read with NBD_CMD_FLAG_DF")
            if r._buf is None:
                r._buf = bytearray(rlen)
            if typ == CHUNK_OFFSET_DATA:
                r._buf[rel:rel + n] = payload[8:]
        elif typ == CHUNK_BLOCK_STATUS:
            if cmd != CMD_BLOCK_STATUS:
                raise Violation(f"BLOCK_STATUS chunk in reply to {name}")
            if ln < 12 or (ln - 4) % 8:
                raise Violation(f"BLOCK_STATUS chunk of length {ln}")
            cid = struct.unpack(">I", payload[:4])[0]
            if cid not in self.contexts:
                raise Violation(f"BLOCK_STATUS for context id {cid} that was not negotiated")
            if cid in r.extents:
                raise Violation(f"two BLOCK_STATUS chunks for context {cid} in one reply")
            ext = [struct.unpack(">II", payload[i:i + 8]) for i in range(4, ln, 8)]
            if any(e[0] == 0 for e in ext):
                raise Violation("block status descriptor of length 0")
            if (rflags & F_REQ_ONE) and len(ext) > 1:
                raise Violation("several descriptors despite NBD_CMD_FLAG_REQ_ONE")
            total = sum(e[0] for e in ext)
            if total - ext[-1][0] >= rlen:
                raise Violation(f"descriptors go past the requested length ({total} > {rlen})")
            if off + total > SIZE:
                raise Violation(f"descriptors go past the end of the export ({off}+{total})")
            r.extents[cid] = ext
        elif typ & 0x8000:
            if ln < 6:
                raise Violation(f"error chunk of length {ln}")
            err, mlen = struct.unpack(">IH", payload[:6])
            if err == 0:
                raise Violation("error chunk with error 0")
            if 6 + mlen > ln:
                raise Violation("error chunk message longer than the chunk")
            if typ == CHUNK_ERROR and ln != 6 + mlen:
                raise Violation("NBD_REPLY_TYPE_ERROR with trailing bytes")
            if typ == CHUNK_ERROR_OFFSET:
                if ln != 14 + mlen:
                    raise Violation("NBD_REPLY_TYPE_ERROR_OFFSET of wrong length")
                eoff = struct.unpack(">Q", payload[6 + mlen:])[0]
                if eoff < off or eoff >= off + max(rlen, 1):
                    raise Violation("NBD_REPLY_TYPE_ERROR_OFFSET outside the request")
            if not r.err:
                r.err, r.msg = err, payload[6:6 + mlen]
        else:
            raise Violation(f"unknown structured chunk type {typ}")
        if not flags & REPLY_FLAG_DONE:
            return None
        del self.partial[cookie]
        del self.pending[cookie]
        if r.err == 0 and cmd == CMD_READ:
            if sum(b - a for a, b in r._covered) != rlen:
                raise Violation(f"successful read of {rlen} bytes covered only "
                                f"{sum(b - a for a, b in r._covered)}")
            r.data = bytes(r._buf) if r._buf is not None else b""
        if r.err == 0 and cmd == CMD_BLOCK_STATUS and set(r.extents) != set(self.contexts):
            raise Violation("successful block status without a chunk for every context")
        return r

    def wait(self, cookie):
        """Reads messages until the reply to cookie is complete (others are kept)."""
        if not hasattr(self, "done"):
            self.done = {}
        while cookie not in self.done:
            r = self.message()
            if r is not None:
                self.done[r.cookie] = r
        return self.done.pop(cookie)

    def call(self, cmd, offset=0, length=0, flags=0, payload=b""):
        return self.wait(self.request(cmd, offset, length, flags, payload))

    def write(self, offset, data, flags=0):
        r = self.call(CMD_WRITE, offset, len(data), flags, data)
        if r.err:
            raise CaseFail(f"write of {len(data)} at {offset} failed: {errname(r.err)}")

    def read(self, offset, length, flags=0):
        r = self.call(CMD_READ, offset, length, flags)
        if r.err:
            raise CaseFail(f"read of {length} at {offset} failed: {errname(r.err)}")
        return r.data

    def disc(self):
        try:
            self.request(CMD_DISC)
            self.expect_eof("after NBD_CMD_DISC")
        finally:
            self.close()


# --- the server ------------------------------------------------------------------------------

def become_subreaper():
    """Orphans (the --fork daemon) get reparented to us, so their exit status can be read."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0   # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


SUBREAPER = False


class Server:
    def __init__(self, workdir, name, image, extra=()):
        self.dir, self.name, self.image, self.extra = workdir, name, image, list(extra)
        self.sock = os.path.join(workdir, name + ".sock")
        self.pidfile = os.path.join(workdir, name + ".pid")
        self.log = os.path.join(workdir, name + ".log")
        self.pid = None
        self.status = None

    def start(self):
        for f in (self.sock, self.pidfile):
            if os.path.exists(f):
                os.unlink(f)
        cmd = SERVER + ["-t", "-e", "64", "-k", self.sock, "--fork", "--pid-file", self.pidfile,
                        "-f", "qcow2"] + self.extra + [self.image]
        with open(self.log, "ab") as log:
            log.write(("+ " + " ".join(cmd) + "\n").encode())
            log.flush()
            try:
                rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30)
            except subprocess.TimeoutExpired:
                raise RuntimeError("server command did not return within 30 s (--fork)")
        if rc != 0:
            raise RuntimeError(f"server command exited {rc}: {self.log_tail()}")
        deadline = time.time() + 5
        while True:
            try:
                with open(self.pidfile) as f:
                    self.pid = int(f.read().strip())
                break
            except (OSError, ValueError):
                if time.time() > deadline:
                    raise RuntimeError("no pid in the --pid-file after the parent exited")
                time.sleep(0.02)
        if not os.path.exists(self.sock):
            raise RuntimeError("socket does not exist after the --fork parent exited")
        self.status = None

    def log_tail(self):
        try:
            with open(self.log, "rb") as f:
                lines = [ln for ln in f.read().decode(errors="replace").splitlines()
                         if ln.strip() and not ln.startswith("+ ")]
                return " | ".join(lines[-3:])
        except OSError:
            return ""

    def _poll(self):
        if self.status is not None:
            return False
        if SUBREAPER:
            try:
                w, st = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                w, st = 0, 0
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    self.status = "gone (exit status unknown: not our descendant)"
                    return False
            if w == self.pid:
                self.status = describe_status(st)
                return False
            return True
        try:
            os.kill(self.pid, 0)
            return True
        except ProcessLookupError:
            self.status = "gone (exit status unknown: no subreaper)"
            return False

    def alive(self):
        return self._poll()

    def stop(self, timeout=20):
        """SIGTERM; returns the list of problems (empty when it exited 0 and removed its socket)."""
        problems = []
        if self._poll():
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.time() + timeout
            while self._poll():
                if time.time() > deadline:
                    problems.append(f"no exit within {timeout}s of SIGTERM; killed")
                    os.kill(self.pid, signal.SIGKILL)
                    while self._poll():
                        time.sleep(0.05)
                    break
                time.sleep(0.02)
        if self.status != "exit 0":
            problems.append(f"server {self.status}, expected exit 0")
        if os.path.exists(self.sock):
            problems.append("socket file still exists after exit")
        reap_orphans()
        return problems

    def kill(self):
        if self.pid and self._poll():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for _ in range(100):
                if not self._poll():
                    break
                time.sleep(0.02)


def describe_status(st):
    if os.WIFEXITED(st):
        return f"exit {os.WEXITSTATUS(st)}"
    if os.WIFSIGNALED(st):
        return f"killed by signal {os.WTERMSIG(st)}"
    return f"status 0x{st:x}"


def reap_orphans():
    """Reaps leftover intermediate --fork processes (only call with no other child running)."""
    if not SUBREAPER:
        return
    while True:
        try:
            w, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if w == 0:
            return


# --- the test run ----------------------------------------------------------------------------

class Run:
    def __init__(self, server, readonly=False):
        self.srv = server
        self.readonly = readonly
        self.shadow = bytearray(SIZE)
        self.failed = []
        self.health_n = 0
        self.shadow_lock = threading.Lock()

    def conn(self, structured=False, meta=False, timeout=None):
        return Conn(self.srv.sock, timeout).negotiate(structured=structured, meta=meta)

    def raw(self, timeout=None):
        return Conn(self.srv.sock, timeout)

    def put(self, offset, data):
        with self.shadow_lock:
            self.shadow[offset:offset + len(data)] = data

    def expect(self, offset, got, what):
        want = bytes(self.shadow[offset:offset + len(got)])
        if got != want:
            i = first_diff(got, want)
            raise CaseFail(f"data corruption ({what}): byte {offset + i} is 0x{got[i]:02x}, "
                           f"expected 0x{want[i]:02x}")

    def check_guards(self, c=None, what="guard regions"):
        own = c is None
        if own:
            c = self.conn(structured=True)
        try:
            for off, ln in (GUARD_A, GUARD_B):
                self.expect(off, c.read(off, ln), what)
        finally:
            if own:
                c.disc()

    def settle(self, offset, length, candidates, what):
        """After an ambiguous case each byte must hold one of the candidate contents; the shadow
        then takes what the image holds."""
        c = self.conn(structured=True)
        got = c.read(offset, length)
        c.disc()
        for i in range(0, length, 4096):
            g = got[i:i + 4096]
            if any(g == cand[i:i + 4096] for cand in candidates):
                continue
            for j, b in enumerate(g):
                if not any(b == cand[i + j] for cand in candidates):
                    raise CaseFail(f"data corruption ({what}): byte {offset + i + j} is 0x{b:02x}, "
                                   "neither the old nor the new content")
        self.put(offset, got)
        return got

    def healthy(self):
        if not self.srv.alive():
            raise CaseFail(f"server died: {self.srv.status}; log: {self.srv.log_tail()}")
        n = self.health_n
        self.health_n += 1
        c = self.conn(structured=bool(n % 2))
        try:
            off = CANARY + (n % 256) * 4096
            if self.readonly:
                self.expect(off, c.read(off, 4096), "health check read")
            else:
                data = os.urandom(4096)
                c.write(off, data)
                got = c.read(off, 4096)
                if got != data:
                    raise CaseFail("health check read back different data")
                self.put(off, data)
        finally:
            c.disc()

    def case(self, name, fn, *args):
        if (ONLY and name not in ONLY) or name in SKIP:
            print(f"skip - {name}", flush=True)
            return
        note = None
        t0 = time.time()
        try:
            note = fn(*args)
            stage = "health check after the case"
            self.healthy()
        except (Closed, Hang, Violation, CaseFail, OSError) as e:
            kind = {Closed: "unexpected disconnect", Hang: "hang", Violation: "protocol violation",
                    CaseFail: ""}.get(type(e), type(e).__name__)
            msg = f"{kind}: {e}" if kind else str(e)
            if "stage" in locals():
                msg = f"{stage}: {msg}"
            if not msg.startswith("server died") and not self.srv.alive():
                tail = self.srv.log_tail()
                msg = (f"server died ({self.srv.status}){'; log: ' + tail if tail else ''}; "
                       f"the client saw: {msg}")
            print(f"FAIL - {name}: {msg}", flush=True)
            self.failed.append(name)
            self.recover()
            return
        dt = time.time() - t0
        extra = f" ({note})" if note else ""
        print(f"ok - {name}{extra}" + (f" [{dt:.1f}s]" if dt > 2 else ""), flush=True)

    def resync(self):
        c = self.conn(structured=True)
        for off in range(0, SIZE, 4 * MiB):
            self.put(off, c.read(off, 4 * MiB))
        c.disc()

    def recover(self):
        """After a failure: restart a dead server, and take the image's content as the new
        shadow, so that one failure does not cascade into the later cases."""
        if self.srv.alive():
            try:
                self.resync()
                print("# shadow resynchronised from the export after the failure", flush=True)
            except (Closed, Hang, Violation, CaseFail, OSError) as e:
                print(f"# could not resynchronise the shadow: {e}", flush=True)
            return
        print(f"# server is gone ({self.srv.status}); restarting it for the remaining cases",
              flush=True)
        try:
            self.srv.start()
        except RuntimeError as e:
            print(f"# restart failed: {e}", flush=True)
            sys.exit(1)
        # The server died without flushing: the shadow no longer predicts the image exactly.
        self.resync()


# --- outcome helpers -------------------------------------------------------------------------

def opt_outcome(c, opt):
    """Final reply type to an option, or None when the server disconnected."""
    try:
        rtype, _ = c.opt_final(opt)
        return rtype
    except Closed:
        return None


def req_outcome(c, cookie):
    try:
        return c.wait(cookie)
    except Closed:
        return None


def require_err(r, allowed, what):
    """r is a Reply (an error from allowed) or None (disconnect); returns a note."""
    if r is None:
        return "disconnect"
    if r.err == 0:
        raise CaseFail(f"{what}: succeeded, expected {'/'.join(errname(e) for e in allowed)}")
    if r.err not in allowed:
        raise CaseFail(f"{what}: error {errname(r.err)}, expected "
                       f"{'/'.join(errname(e) for e in allowed)}")
    return errname(r.err)


def go_after_error(run, c, note):
    """After an error reply to a malformed option the server may go on (then GO must work) or,
    the client having broken the protocol, hang up."""
    try:
        if c.go():
            raise CaseFail(f"NBD_OPT_GO after {note} failed")
    except Closed:
        c.close()
        return f"{note} then disconnect"
    still_in_sync(run, c)
    c.disc()
    return note


def still_in_sync(run, c):
    """After an error reply the connection must still work."""
    run.expect(GUARD_A[0], c.read(GUARD_A[0], 4096), "read after an error reply")


def notes(outcomes):
    uniq = []
    for o in outcomes:
        if o and o not in uniq:
            uniq.append(o)
    return ", ".join(uniq)


# --- handshake cases -------------------------------------------------------------------------

def h_bad_client_flags(run):
    c = run.raw()
    c.greet()
    try:
        c.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | 0x40000000))
        c.send_opt(OPT_GO, struct.pack(">IH", 0, 0))
    except Closed:
        return "disconnect"
    c.expect_eof("client flags with unknown bits: the server MUST drop the connection")
    c.close()
    return "disconnect"


def h_garbage_magic(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    try:
        c.send(b"GARBAGE!" + struct.pack(">II", OPT_GO, 6) + struct.pack(">IH", 0, 0))
    except Closed:
        return "disconnect"
    rtype = opt_outcome(c, None)
    c.close()
    if rtype is None:
        return "disconnect"
    if not rtype & REP_ERR:
        raise CaseFail(f"option without IHAVEOPT magic answered {repname(rtype)}")
    return repname(rtype)


def h_optlen_huge(run):
    out = []
    for opt in (OPT_GO, OPT_LIST, 0x4242):
        c = run.raw()
        c.greet()
        c.send_client_flags()
        try:
            c.send_opt(opt, struct.pack(">IH", 0, 0) + b"\0" * 58, length=0xFFFFFFFF)
        except Closed:
            out.append("disconnect")
            continue
        rtype = opt_outcome(c, opt)
        c.close()
        if rtype is not None and not rtype & REP_ERR:
            raise CaseFail(f"option {opt} with length 0xffffffff answered {repname(rtype)}")
        out.append("disconnect" if rtype is None else repname(rtype))
    return notes(out)


def h_optlen_short_close(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + struct.pack(">I", 0) + b"x" * 16)
    c.close()


def h_unknown_option(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(0x4242, b"12345678")
    rtype = opt_outcome(c, 0x4242)
    if rtype != ERR_UNSUP:
        raise CaseFail(f"unknown option answered {'disconnect' if rtype is None else repname(rtype)}, "
                       "expected NBD_REP_ERR_UNSUP")
    if c.go():
        raise CaseFail("NBD_OPT_GO after an unknown option failed")
    still_in_sync(run, c)
    c.disc()


def h_go_namelen_overflow(run):
    out = []
    for opt in (OPT_INFO, OPT_GO):
        for data in (struct.pack(">I", 1000) + b"x" + struct.pack(">H", 0),      # name past the end
                     struct.pack(">I", 0xFFFFFFFF) + struct.pack(">H", 0),       # absurd name length
                     struct.pack(">I", 0) + struct.pack(">H", 50) + b"\0\3",     # info count too big
                     struct.pack(">I", 0) + b"\0"):                             # truncated count
            c = run.raw()
            c.greet()
            c.send_client_flags()
            c.send_opt(opt, data)
            rtype = opt_outcome(c, opt)
            if rtype is None:
                out.append("disconnect")
                continue
            if rtype != ERR_INVALID:
                raise CaseFail(f"{'INFO' if opt == OPT_INFO else 'GO'} with inconsistent lengths "
                               f"({data.hex()}) answered {repname(rtype)}, expected NBD_REP_ERR_INVALID")
            out.append(go_after_error(run, c, "ERR_INVALID"))
    return notes(out)


def h_go_unknown_export(run):
    out = []
    for opt in (OPT_INFO, OPT_GO):
        c = run.raw()
        c.greet()
        c.send_client_flags()
        rtype = c.go(b"no-such-export", opt=opt)
        if rtype != ERR_UNKNOWN:
            raise CaseFail(f"{'INFO' if opt == OPT_INFO else 'GO'} for an unknown export answered "
                           f"{repname(rtype) if rtype else 'success'}, expected NBD_REP_ERR_UNKNOWN")
        out.append("ERR_UNKNOWN")
        if c.go():
            raise CaseFail("NBD_OPT_GO for the real export after NBD_REP_ERR_UNKNOWN failed")
        still_in_sync(run, c)
        c.disc()
    return notes(out)


def h_export_name_unknown(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(OPT_EXPORT_NAME, b"no-such-export")
    c.expect_eof("NBD_OPT_EXPORT_NAME of an unknown export: the server must disconnect")
    c.close()


def h_export_name_ok(run):
    """The old way in (no reply header, 124 zero bytes unless NO_ZEROES) must still work."""
    for zeroes in (False, True):
        c = run.raw()
        c.greet()
        cflags = FLAG_FIXED_NEWSTYLE | (0 if zeroes else c.hflags & FLAG_NO_ZEROES)
        c.send_client_flags(cflags)
        c.send_opt(OPT_EXPORT_NAME, b"")
        size, tflags = struct.unpack(">QH", c.recv(10, "EXPORT_NAME reply"))
        if size != SIZE:
            raise CaseFail(f"EXPORT_NAME gives size {size}")
        if not cflags & FLAG_NO_ZEROES:
            if c.recv(124, "124 zero bytes") != b"\0" * 124:
                raise Violation("the 124 padding bytes are not zero")
        c.size, c.tflags = size, tflags
        still_in_sync(run, c)
        c.disc()


def h_list_with_payload(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(OPT_LIST, b"abcd")
    rtype = opt_outcome(c, OPT_LIST)
    if rtype is None:
        return "disconnect"
    if rtype != ERR_INVALID:
        raise CaseFail(f"NBD_OPT_LIST with a payload answered {repname(rtype)}, expected ERR_INVALID")
    try:
        c.send_opt(OPT_LIST)
        rtype, items = c.opt_final(OPT_LIST)
    except Closed:
        return "ERR_INVALID then disconnect"
    if rtype != REP_ACK or not items:
        raise CaseFail(f"plain NBD_OPT_LIST afterwards answered {repname(rtype)} with {len(items)} exports")
    if c.go():
        raise CaseFail("NBD_OPT_GO after NBD_OPT_LIST failed")
    still_in_sync(run, c)
    c.disc()
    return "ERR_INVALID"


def h_meta_before_structured(run):
    out = []
    for opt in (OPT_SET_META_CONTEXT, OPT_LIST_META_CONTEXT):
        c = run.raw()
        c.greet()
        c.send_client_flags()
        q = b"base:allocation"
        c.send_opt(opt, struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", len(q)) + q)
        rtype = opt_outcome(c, opt)
        if rtype is None:
            out.append("disconnect")
            continue
        what = f"{'SET' if opt == OPT_SET_META_CONTEXT else 'LIST'}_META_CONTEXT"
        if not rtype & REP_ERR:
            # LIST is informational and QEMU answers it; SET must not select contexts that
            # could never be used without structured replies.
            if opt == OPT_SET_META_CONTEXT or STRICT:
                raise CaseFail(f"{what} before STRUCTURED_REPLY succeeded; the server should "
                               "answer NBD_REP_ERR_INVALID")
        out.append(go_after_error(run, c, f"{what.split('_')[0]}:{repname(rtype)}"))
    return notes(out)


def h_meta_bogus_lengths(run):
    q = b"base:allocation"
    bodies = [
        struct.pack(">I", 0xFFFFFFFF) + struct.pack(">I", 1),                        # name length
        struct.pack(">I", 0) + struct.pack(">I", 1000) + struct.pack(">I", len(q)) + q,  # count
        struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", 200) + q,     # query length
        struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", 0xFFFFFFFF) + q,
        struct.pack(">I", 0) + struct.pack(">I", 0x7FFFFFFF),                        # count, no queries
        b"\0\0\0",                                                                   # too short
    ]
    junk = struct.pack(">I", 0) + struct.pack(">I", 1) + struct.pack(">I", len(q)) + q + b"junk"
    bodies.append(junk)
    out = []
    for opt in (OPT_SET_META_CONTEXT, OPT_LIST_META_CONTEXT):
        for body in bodies:
            c = run.raw()
            c.greet()
            c.send_client_flags()
            c.negotiate_structured()
            c.send_opt(opt, body)
            rtype = opt_outcome(c, opt)
            if rtype is None:
                out.append("disconnect")
                continue
            if body is junk and not STRICT and not rtype & REP_ERR:
                note = f"trailing junk:{repname(rtype)}"   # QEMU ignores the junk
            elif rtype in (ERR_INVALID, ERR_TOO_BIG):
                note = repname(rtype)
            else:
                raise CaseFail(f"{'SET' if opt == OPT_SET_META_CONTEXT else 'LIST'}_META_CONTEXT with "
                               f"bogus lengths ({body.hex()}) answered {repname(rtype)}, "
                               "expected NBD_REP_ERR_INVALID")
            out.append(go_after_error(run, c, note))
    return notes(out)


def h_close_midway(run):
    steps = ["connect", "greeting", "half flags", "flags", "half option header", "option header",
             "GO sent", "STRUCTURED_REPLY sent", "GO half-read"]
    for stop in steps:
        c = run.raw()
        try:
            if stop == "connect":
                continue
            c.greet()
            if stop == "greeting":
                continue
            if stop == "half flags":
                c.send(b"\0\0")
                continue
            c.send_client_flags()
            if stop == "flags":
                continue
            hdr = struct.pack(">QII", IHAVEOPT, OPT_GO, 6)
            if stop == "half option header":
                c.send(hdr[:7])
                continue
            if stop == "option header":
                c.send(hdr)
                continue
            if stop == "STRUCTURED_REPLY sent":
                c.send_opt(OPT_STRUCTURED_REPLY)
                continue
            c.send_opt(OPT_GO, struct.pack(">IH", 0, 0))
            if stop == "GO half-read":
                c.recv(10, "part of the GO reply")
        finally:
            c.close()
    # The server must still answer a full handshake right away.
    run.conn().disc()


def h_starttls(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(OPT_STARTTLS)
    rtype = opt_outcome(c, OPT_STARTTLS)
    if rtype is None:
        return "disconnect"
    if rtype == REP_ACK or rtype == ERR_TLS_REQD:
        raise CaseFail(f"NBD_OPT_STARTTLS without TLS configured answered {repname(rtype)}")
    if not rtype & REP_ERR:
        raise CaseFail(f"NBD_OPT_STARTTLS answered {repname(rtype)}")
    if c.go():
        raise CaseFail("NBD_OPT_GO after STARTTLS was refused failed")
    still_in_sync(run, c)
    c.disc()
    return repname(rtype)


def h_structured_with_payload(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(OPT_STRUCTURED_REPLY, b"xyz")
    rtype = opt_outcome(c, OPT_STRUCTURED_REPLY)
    if rtype is None:
        return "disconnect"
    if rtype != ERR_INVALID:
        raise CaseFail(f"NBD_OPT_STRUCTURED_REPLY with a payload answered {repname(rtype)}, "
                       "expected NBD_REP_ERR_INVALID")
    # Simple replies from here: structured replies were not negotiated.
    return go_after_error(run, c, "ERR_INVALID")


def h_abort(run):
    c = run.raw()
    c.greet()
    c.send_client_flags()
    c.send_opt(OPT_ABORT)
    rtype = opt_outcome(c, OPT_ABORT)
    c.close()
    if rtype not in (None, REP_ACK):
        raise CaseFail(f"NBD_OPT_ABORT answered {repname(rtype)}")
    return "disconnect" if rtype is None else "ACK"


def h_many_options(run):
    """500 harmless options in a row: answered one by one, or a disconnect (DoS guard)."""
    c = run.raw()
    c.greet()
    c.send_client_flags()
    for i in range(500):
        c.send_opt(0x4242 + (i % 7))
        rtype = opt_outcome(c, None)
        if rtype is None:
            return f"disconnect after {i} options"
        if rtype != ERR_UNSUP:
            raise CaseFail(f"unknown option {i} answered {repname(rtype)}")
    if c.go():
        raise CaseFail("NBD_OPT_GO after 500 options failed")
    c.disc()
    return "all answered"


# --- transmission cases ----------------------------------------------------------------------

def t_bad_magic(run, structured):
    """A disconnect, or (QEMU) an error reply for the garbled request and then a disconnect or
    a connection that still works."""
    c = run.conn(structured=structured)
    r = req_outcome(c, c.request(CMD_READ, 0, 4096, magic=0x25609514, cookie=0x77))
    if r is None:
        c.close()
        return "disconnect"
    if r.err == 0:
        raise CaseFail("a request with a bad magic succeeded")
    try:
        still_in_sync(run, c)
    except Closed:
        c.close()
        return f"{errname(r.err)} reply, then disconnect"
    c.disc()
    return f"{errname(r.err)} reply, connection still usable"


def t_unknown_command(run, structured):
    out = []
    for cmd in (0x55, 0xFFFF, 8):
        c = run.conn(structured=structured)
        r = req_outcome(c, c.request(cmd, 0, 0))
        out.append(require_err(r, (EINVAL,), f"command type {cmd}"))
        if r is not None:
            still_in_sync(run, c)
            c.disc()
        else:
            c.close()
    return notes(out)


def t_unknown_flags(run, structured):
    out = []
    for cmd, flags in ((CMD_READ, 0x4000), (CMD_READ, 0x8000), (CMD_WRITE, 0x4000),
                       (CMD_TRIM, 0x2000), (CMD_WRITE_ZEROES, 0x1000), (CMD_FLUSH, 0x4000)):
        c = run.conn(structured=structured)
        off, ln = (GUARD_A[0], 4096) if cmd != CMD_FLUSH else (0, 0)
        payload = b"\xee" * ln if cmd == CMD_WRITE else b""
        r = req_outcome(c, c.request(cmd, off, ln, flags, payload))
        out.append(require_err(r, (EINVAL,), f"{CMD_NAMES[cmd]} with flags 0x{flags:x}"))
        if r is not None:
            still_in_sync(run, c)
            c.disc()
        else:
            c.close()
    run.check_guards(what="after commands with unknown flags")
    return notes(out)


def t_bounds(run, structured):
    cases = [(SIZE - 4096, 8192), (SIZE, 1), (SIZE + 4096, 4096), (2**64 - 4096, 4096),
             (2**64 - 1, 2), (2**63, 4096), (SIZE - 1, 0xFFFFFFFF)]
    cmds = [CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_CACHE]
    if structured:
        cmds.append(CMD_BLOCK_STATUS)
    out = []
    c = None
    for cmd in cmds:
        for off, ln in cases:
            if cmd == CMD_WRITE and ln > 64 * KiB:
                continue   # a 4 GiB payload is the oversized-write case's business
            if c is None:
                c = run.conn(structured=structured, meta=structured)
            payload = b"\xee" * ln if cmd == CMD_WRITE else b""
            allowed = (EINVAL, ENOSPC) if cmd in (CMD_WRITE, CMD_WRITE_ZEROES) else (EINVAL,)
            r = req_outcome(c, c.request(cmd, off, ln, 0, payload))
            out.append(require_err(r, allowed, f"{CMD_NAMES[cmd]} offset {off} length {ln}"))
            if r is None:
                c.close()
                c = None
            else:
                still_in_sync(run, c)
    run.check_guards(c, "after requests past the end")
    c.disc()
    return notes(out)


def t_oversized_read(run, structured):
    c = run.conn(structured=structured, timeout=max(TIMEOUT, 30))
    ln = 32 * MiB + 1
    r = req_outcome(c, c.request(CMD_READ, 0, ln))
    if r is None:
        return "disconnect"
    if r.err == 0:
        run.expect(0, r.data, "read of 32 MiB + 1")
        c.disc()
        return "accepted (data verified)"
    note = require_err(r, (EINVAL, EOVERFLOW), "read of 32 MiB + 1")
    still_in_sync(run, c)
    c.disc()
    return note


def t_oversized_write(run, structured):
    """A 64 MiB write: an error reply (payload consumed or followed by a disconnect), a
    disconnect, or success with the data really written."""
    c = run.conn(structured=structured, timeout=max(TIMEOUT, 30))
    data = bytes([0x5A]) * (64 * MiB)
    cookie, msg = c.request(CMD_WRITE, 0, len(data), payload=b"", send=False)
    send_err = []

    def sender():
        try:
            c.s.sendall(msg)
            view = memoryview(data)
            for i in range(0, len(data), 4 * MiB):
                c.s.sendall(view[i:i + 4 * MiB])
        except (OSError, socket.timeout) as e:
            send_err.append(e)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    r = req_outcome(c, cookie)
    if r is not None and r.err == 0:
        t.join(TIMEOUT)
        run.put(0, data)
        run.expect(0, c.read(0, 4096), "after the 64 MiB write")
        run.expect(SIZE - 4096, c.read(SIZE - 4096, 4096), "after the 64 MiB write")
        c.disc()
        # Restore the guard patterns for the later cases.
        c = run.conn()
        for off, ln in (GUARD_A, GUARD_B):
            pat = pattern(off, ln)
            c.write(off, pat)
            run.put(off, pat)
        c.disc()
        return "accepted (data verified)"
    note = require_err(r, (EINVAL, EOVERFLOW, ENOSPC), "write of 64 MiB")
    if r is not None:
        t.join(TIMEOUT)
        try:
            still_in_sync(run, c)
            note += ", connection still usable"
        except Closed:
            note += ", then disconnect"
    c.close()
    t.join(TIMEOUT)
    run.check_guards(what="after the refused 64 MiB write")
    return note


def t_cut_write(run, structured):
    off, ln = MISC, 1 * MiB
    old = bytes(run.shadow[off:off + ln])
    new = bytes(b ^ 0xFF for b in old[:4096]) * (ln // 4096)
    c = run.conn(structured=structured)
    c.send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 1, off, ln) + new[:300 * KiB])
    time.sleep(0.05)
    c.close()
    # A header cut in the middle.
    c = run.conn(structured=structured)
    c.send(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 2, off, ln)[:13])
    c.close()
    time.sleep(0.1)
    got = run.settle(off, ln, (old, new), "write payload cut off")
    return "new content partly applied" if got != old else "nothing applied"


def t_close_one_inflight(run, structured):
    """The simplest abandonment: one request sent, the socket closed before its reply."""
    off, ln = MISC + 1536 * KiB, 64 * KiB
    old = bytes(run.shadow[off:off + ln])
    new = os.urandom(ln)
    c = run.conn(structured=structured)
    c.request(CMD_READ, GUARD_A[0], 1 * MiB)
    c.close()
    time.sleep(0.1)
    if not run.srv.alive():
        raise CaseFail(f"server died ({run.srv.status}) after a client closed with one read in flight")
    c = run.conn(structured=structured)
    c.request(CMD_WRITE, off, ln, payload=new)
    c.close()
    time.sleep(0.1)
    if not run.srv.alive():
        raise CaseFail(f"server died ({run.srv.status}) after a client closed with one write in flight")
    got = run.settle(off, ln, (old, new), "write in flight at close")
    return "write applied" if got == new else "write dropped"


def t_disconnect_inflight(run, structured):
    base, n, ln = INFLIGHT, 48, 64 * KiB
    old = bytes(run.shadow[base:base + n * ln])
    new = os.urandom(n * ln)
    c = run.conn(structured=structured)
    msgs = []
    for i in range(n):
        _, m = c.request(CMD_WRITE, base + i * ln, ln, payload=new[i * ln:(i + 1) * ln], send=False)
        msgs.append(m)
        _, m = c.request(CMD_READ, random.randrange(0, SIZE // 4096) * 4096, 64 * KiB, send=False)
        msgs.append(m)
    blob = b"".join(msgs)

    def sender():
        try:
            c.s.sendall(blob)
        except OSError:
            pass

    # The server may stop reading while its replies pile up unread: give the sender a moment,
    # then drop the connection whatever has been sent.
    t = threading.Thread(target=sender, daemon=True)
    t.start()
    t.join(0.3)
    try:
        c.s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    c.close()
    t.join(TIMEOUT)
    time.sleep(0.2)
    run.settle(base, n * ln, (old, new), "writes in flight at disconnect")


def t_pipelined(run, structured):
    n = 1000
    c = run.conn(structured=structured)
    reqs = {}
    msgs = []
    specials = [0, 2**64 - 1, 1 << 63]
    for i in range(n):
        off = random.randrange(0, SIZE // 4096) * 4096
        cookie = specials[i] if i < len(specials) else None
        while cookie is None or cookie in reqs:
            cookie = random.getrandbits(64)
        _, m = c.request(CMD_READ, off, 4096, cookie=cookie, send=False)
        reqs[cookie] = off
        msgs.append(m)
    blob = b"".join(msgs)
    done = threading.Event()
    err = []

    def sender():
        try:
            c.s.sendall(blob)
        except OSError as e:
            err.append(e)
        done.set()

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    # Read nothing until everything is sent, unless the server throttles by not reading.
    throttled = not done.wait(3)
    got = {}
    while len(got) < n:
        r = c.message()
        if r is None:
            continue
        if r.cookie in got:
            raise Violation(f"second reply for cookie 0x{r.cookie:x}")
        if r.err:
            raise CaseFail(f"pipelined read at {reqs[r.cookie]} failed: {errname(r.err)}")
        run.expect(reqs[r.cookie], r.data, "pipelined read")
        got[r.cookie] = True
    t.join(TIMEOUT)
    if err:
        raise CaseFail(f"sending the requests failed: {err[0]}")
    c.disc()
    return "server throttled the sender" if throttled else None


def t_stalled_client(run):
    """A client that sends reads and never reads replies must not block another client."""
    a = run.conn(structured=False)
    stop = threading.Event()

    def staller():
        hdrs = b"".join(a.request(CMD_READ, (i % 64) * MiB, 1 * MiB, send=False)[1]
                        for i in range(2000))
        try:
            a.s.settimeout(None)
            view = memoryview(hdrs)
            for i in range(0, len(hdrs), 28 * 64):
                if stop.is_set():
                    return
                a.s.sendall(view[i:i + 28 * 64])
        except OSError:
            pass

    t = threading.Thread(target=staller, daemon=True)
    t.start()
    time.sleep(0.5)          # let the server fill the pipe to the stalled client
    b = run.conn(structured=True)
    t0 = time.time()
    for i in range(200):
        off = STALL + (i % 256) * 4096
        data = os.urandom(4096)
        b.write(off, data)
        if b.read(off, 4096) != data:
            raise CaseFail("round trip next to the stalled client read back different data")
        run.put(off, data)
    dt = time.time() - t0
    b.disc()
    stop.set()
    try:
        a.s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    a.close()
    t.join(TIMEOUT)
    if dt > TIMEOUT:
        raise CaseFail(f"200 round trips took {dt:.1f}s while another client stalled")
    return f"200 round trips in {dt:.2f}s"


def t_many_connections(run, count=64):
    errors = []
    retries = []
    barrier = threading.Barrier(count, timeout=3 * TIMEOUT)
    time.sleep(0.3)   # let the server finish tearing down the previous cases' connections

    def connect(i):
        # A server at its -e limit may queue a connection (QEMU) or close it at once; a
        # connection of an earlier case may still be going away, so retry a refused one.
        for attempt in range(3):
            try:
                return run.conn(structured=bool(i % 2), timeout=3 * TIMEOUT)
            except (Closed, ConnectionRefusedError):
                if attempt == 2:
                    raise
                retries.append(i)
                time.sleep(0.5)

    def worker(i):
        try:
            c = connect(i)
            barrier.wait()      # all connections open at once
            base = CONNS + i * 64 * KiB
            for k in range(16):
                off = base + k * 4096
                data = os.urandom(4096)
                c.write(off, data, F_FUA if k % 4 == 0 else 0)
                if c.read(off, 4096) != data:
                    raise CaseFail(f"connection {i}: read back different data at {off}")
                run.put(off, data)
            got = c.read(base, 64 * KiB)
            run.expect(base, got, f"connection {i} region")
            c.disc()
        except threading.BrokenBarrierError:
            errors.append(f"connection {i}: not all {count} connections could be opened at once")
        except (Closed, Hang, Violation, CaseFail, OSError) as e:
            errors.append(f"connection {i}: {type(e).__name__}: {e}")
            try:
                barrier.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(6 * TIMEOUT)
    if any(th.is_alive() for th in threads):
        raise Hang("a connection thread did not finish")
    if errors:
        raise CaseFail(f"{len(errors)} of {count} connections failed; first: {errors[0]}")
    return f"{len(retries)} connection(s) retried" if retries else None


def t_disc_inflight(run, structured):
    off, ln = MISC + 1 * MiB, 256 * KiB
    new = os.urandom(ln)
    c = run.conn(structured=structured)
    rc = c.request(CMD_READ, GUARD_A[0], 1 * MiB, send=False)
    wc = c.request(CMD_WRITE, off, ln, payload=new, send=False)
    dc = c.request(CMD_DISC, send=False)
    c.send(rc[1] + wc[1] + dc[1])
    seen = []
    while True:
        try:
            r = c.message()
        except Closed as e:
            # The client asked to go away: a reply cut short by the close is acceptable
            # (QEMU does this), the write below must still have happened.
            if "after" in str(e):
                seen.append("cut reply")
            break
        if r is None:
            continue
        seen.append(CMD_NAMES[r.cmd])
        if r.err:
            raise CaseFail(f"{CMD_NAMES[r.cmd]} before NBD_CMD_DISC failed: {errname(r.err)}")
        if r.cmd == CMD_READ:
            run.expect(GUARD_A[0], r.data, "read in flight at NBD_CMD_DISC")
    c.close()
    time.sleep(0.1)
    # NBD_CMD_DISC: the server MUST handle all outstanding requests, so the write happened.
    c = run.conn(structured=True)
    got = c.read(off, ln)
    c.disc()
    if got != new:
        raise CaseFail("a write sent before NBD_CMD_DISC was not applied (the server must handle "
                       "outstanding requests)")
    run.put(off, new)
    return ("replies: " + "+".join(seen)) if seen else "closed without replies"


def t_zero_length(run, structured):
    c = run.conn(structured=structured, meta=structured)
    cmds = [CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_CACHE, CMD_FLUSH]
    if structured:
        cmds.append(CMD_BLOCK_STATUS)
    out = []
    for cmd in cmds:
        for off in (ZEROLEN, SIZE):
            r = req_outcome(c, c.request(cmd, off, 0))
            if r is None:
                out.append(f"{CMD_NAMES[cmd]}:disconnect")
                c.close()
                c = run.conn(structured=structured, meta=structured)
                continue
            if r.err not in (0, EINVAL):
                raise CaseFail(f"zero-length {CMD_NAMES[cmd]} at {off} failed with {errname(r.err)}")
            if r.err == 0 and cmd == CMD_READ and r.data:
                raise Violation("zero-length read returned data")
            out.append(f"{CMD_NAMES[cmd]}:{'ok' if r.err == 0 else 'EINVAL'}")
            still_in_sync(run, c)
    run.expect(ZEROLEN, c.read(ZEROLEN, 4096), "after zero-length requests")
    c.disc()
    return notes(sorted(set(out)))


def t_flush_fua_ok(run, structured):
    """Sanity: the features a normal client uses work with both reply kinds."""
    c = run.conn(structured=structured, meta=structured)
    off = ZEROLEN + 64 * KiB
    data = os.urandom(128 * KiB)
    c.write(off, data, F_FUA)
    run.put(off, data)
    if c.call(CMD_FLUSH).err:
        raise CaseFail("flush failed")
    r = c.call(CMD_WRITE_ZEROES, off, 64 * KiB, F_NO_HOLE)
    if r.err:
        raise CaseFail(f"write zeroes failed: {errname(r.err)}")
    run.put(off, bytes(64 * KiB))
    run.expect(off, c.read(off, 128 * KiB), "after write zeroes")
    if structured:
        r = c.call(CMD_READ, off, 64 * KiB, F_DF)
        if r.err:
            raise CaseFail(f"read with NBD_CMD_FLAG_DF failed: {errname(r.err)}")
        run.expect(off, r.data, "read with DF")
        r = c.call(CMD_BLOCK_STATUS, 0, SIZE)
        if r.err:
            raise CaseFail(f"block status failed: {errname(r.err)}")
        r = c.call(CMD_BLOCK_STATUS, 0, SIZE, F_REQ_ONE)
        if r.err:
            raise CaseFail(f"block status with REQ_ONE failed: {errname(r.err)}")
    c.disc()


# --- read-only cases -------------------------------------------------------------------------

def r_refused(run, structured):
    c = run.conn(structured=structured)
    if not c.tflags & TF_READ_ONLY:
        raise CaseFail(f"transmission flags 0x{c.tflags:x} lack NBD_FLAG_READ_ONLY")
    out = []
    for cmd, flags in ((CMD_WRITE, 0), (CMD_WRITE, F_FUA), (CMD_TRIM, 0), (CMD_WRITE_ZEROES, 0),
                       (CMD_WRITE_ZEROES, F_NO_HOLE)):
        off, ln = GUARD_A[0], 64 * KiB
        payload = os.urandom(ln) if cmd == CMD_WRITE else b""
        r = req_outcome(c, c.request(cmd, off, ln, flags, payload))
        if r is None:
            raise CaseFail(f"{CMD_NAMES[cmd]} on a read-only export: disconnect, expected EPERM")
        allowed = (EPERM,) if STRICT else (EPERM, EINVAL)
        if r.err not in allowed:
            raise CaseFail(f"{CMD_NAMES[cmd]} on a read-only export: "
                           f"{'success' if not r.err else errname(r.err)}, expected EPERM")
        out.append(f"{CMD_NAMES[cmd]}:{errname(r.err)}"
                   + ("" if r.err == EPERM else " (the protocol recommends EPERM)"))
        still_in_sync(run, c)
    run.check_guards(c, "read-only export after refused writes")
    if c.call(CMD_FLUSH).err not in (0, EPERM):
        raise CaseFail("flush on a read-only export failed with an unexpected error")
    c.disc()
    return notes(out)


# --- main ------------------------------------------------------------------------------------

def qemu_img(*args):
    p = subprocess.run(["qemu-img", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.returncode, p.stdout.decode(errors="replace")


def final_checks(run, label, image, workdir):
    """SIGTERM -> exit 0 and socket gone; qemu-img check clean; image == shadow."""
    ok = True
    problems = run.srv.stop()
    if problems:
        print(f"FAIL - {label}-sigterm: {'; '.join(problems)}", flush=True)
        ok = False
    else:
        print(f"ok - {label}-sigterm (exit 0, socket removed)", flush=True)
    rc, out = qemu_img("check", "-f", "qcow2", image)
    if rc != 0:
        print(f"FAIL - {label}-check: qemu-img check exit {rc}: "
              f"{' | '.join(out.strip().splitlines()[-3:])}", flush=True)
        ok = False
    else:
        print(f"ok - {label}-check", flush=True)
    raw = os.path.join(workdir, "final.raw")
    rc, out = qemu_img("convert", "-f", "qcow2", "-O", "raw", image, raw)
    if rc != 0:
        print(f"FAIL - {label}-content: qemu-img convert failed: {out.strip()}", flush=True)
        return False
    with open(raw, "rb") as f:
        got = f.read()
    os.unlink(raw)
    i = first_diff(got, bytes(run.shadow))
    if i >= 0:
        print(f"FAIL - {label}-content: image differs from what the clients wrote at byte {i}",
              flush=True)
        ok = False
    else:
        print(f"ok - {label}-content (image equals every acknowledged write)", flush=True)
    return ok


SERVERS = []


def on_signal(signum, _frame):
    """Kill our servers right here (the unwinding may be slow), then exit through finally."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for srv in SERVERS:
        try:
            srv.kill()
        except OSError:
            pass
    sys.exit(128 + signum)


def main():
    global SUBREAPER
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    SUBREAPER = become_subreaper()
    if not SUBREAPER:
        print("# warning: PR_SET_CHILD_SUBREAPER unavailable; exit statuses cannot be checked")
    workdir = tempfile.mkdtemp(prefix="qblock-nbd-hostile.")
    if len(os.path.join(workdir, "rw.sock")) > 100:
        print(f"scratch directory path too long for a Unix socket: {workdir}")
        return 2
    image = os.path.join(workdir, "img.qcow2")
    servers = SERVERS
    t_start = time.time()
    print(f"# server: {' '.join(SERVER)}; scratch {workdir}", flush=True)
    failed = False
    try:
        rc, out = qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", image, str(SIZE))
        if rc:
            print(f"qemu-img create failed: {out}")
            return 2
        srv = Server(workdir, "rw", image)
        servers.append(srv)
        try:
            srv.start()
        except RuntimeError as e:
            print(f"FAIL - start: {e}")
            return 2
        run = Run(srv)
        # Known patterns in the guard regions.
        c = run.conn(structured=True)
        for off, ln in (GUARD_A, GUARD_B):
            pat = pattern(off, ln)
            c.write(off, pat)
            run.put(off, pat)
        c.disc()

        R = run.case
        R("handshake-bad-client-flags", h_bad_client_flags, run)
        R("handshake-garbage-magic", h_garbage_magic, run)
        R("handshake-option-length-4g", h_optlen_huge, run)
        R("handshake-option-short-then-close", h_optlen_short_close, run)
        R("handshake-unknown-option", h_unknown_option, run)
        R("handshake-info-go-name-length", h_go_namelen_overflow, run)
        R("handshake-go-unknown-export", h_go_unknown_export, run)
        R("handshake-export-name-unknown", h_export_name_unknown, run)
        R("handshake-export-name-ok", h_export_name_ok, run)
        R("handshake-list-with-payload", h_list_with_payload, run)
        R("handshake-meta-before-structured", h_meta_before_structured, run)
        R("handshake-meta-bogus-lengths", h_meta_bogus_lengths, run)
        R("handshake-close-midway", h_close_midway, run)
        R("handshake-starttls-without-tls", h_starttls, run)
        R("handshake-structured-with-payload", h_structured_with_payload, run)
        R("handshake-abort", h_abort, run)
        R("handshake-many-options", h_many_options, run)
        for st in (False, True):
            k = "structured" if st else "simple"
            R(f"io-sanity-{k}", t_flush_fua_ok, run, st)
            R(f"bad-request-magic-{k}", t_bad_magic, run, st)
            R(f"unknown-command-{k}", t_unknown_command, run, st)
            R(f"unknown-flags-{k}", t_unknown_flags, run, st)
            R(f"past-end-{k}", t_bounds, run, st)
            R(f"read-32m-plus-1-{k}", t_oversized_read, run, st)
            R(f"write-64m-{k}", t_oversized_write, run, st)
            R(f"write-payload-cut-{k}", t_cut_write, run, st)
            R(f"close-with-one-in-flight-{k}", t_close_one_inflight, run, st)
            R(f"disconnect-in-flight-{k}", t_disconnect_inflight, run, st)
            R(f"pipelined-1000-reads-{k}", t_pipelined, run, st)
            R(f"disc-with-request-in-flight-{k}", t_disc_inflight, run, st)
            R(f"zero-length-{k}", t_zero_length, run, st)
        R("stalled-client", t_stalled_client, run)
        R("64-connections", t_many_connections, run)
        if not final_checks(run, "rw", image, workdir):
            failed = True
        failed = failed or bool(run.failed)

        # Read-only run on the same image.
        ro = Server(workdir, "ro", image, ["-r"])
        servers.append(ro)
        try:
            ro.start()
        except RuntimeError as e:
            print(f"FAIL - ro-start: {e}")
            return 1
        rorun = Run(ro, readonly=True)
        rorun.shadow = run.shadow
        rorun.health_n = 0
        rorun.case("readonly-writes-refused-simple", r_refused, rorun, False)
        rorun.case("readonly-writes-refused-structured", r_refused, rorun, True)
        if not final_checks(rorun, "ro", image, workdir):
            failed = True
        failed = failed or bool(rorun.failed)
        names = run.failed + rorun.failed
        print(f"# {'FAILED: ' + ' '.join(names) if names else 'all cases passed'}"
              f" ({time.time() - t_start:.1f}s)", flush=True)
        return 1 if failed else 0
    finally:
        for s in servers:
            s.kill()
        reap_orphans()
        if os.environ.get("NBD_KEEP"):
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
