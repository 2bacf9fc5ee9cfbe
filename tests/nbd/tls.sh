#!/bin/bash
# `qblock nbd` with TLS (STARTTLS): x509 and PSK credentials made by make-tls-creds.sh, real
# clients (nbdinfo, nbdcopy, qemu-img with a tls-creds object), and the refusals: a client
# without TLS, a client with the wrong key or an untrusted CA. Every image and socket lives in
# a temporary directory; every server started is stopped.
#   NBD_SERVER   the server command (default: qblock nbd from the debug build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
server=${NBD_SERVER:-$here/../../build/debug/bin/qblock nbd}
dir=$(mktemp -d)
pid_file=$dir/server.pid
failures=0

stop_server() {
  if [[ -f $pid_file ]]; then
    local pid
    pid=$(cat "$pid_file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      echo "FAIL - server did not stop on SIGTERM"
      failures=$((failures + 1))
    fi
    rm -f "$pid_file"
  fi
}
trap 'stop_server; rm -rf "$dir"' EXIT

ok() { echo "ok - $1"; }
fail() {
  echo "FAIL - $1"
  failures=$((failures + 1))
}
# expect_ok NAME CMD...: the command must succeed.
expect_ok() {
  local name=$1
  shift
  if "$@" >"$dir/out" 2>&1; then ok "$name"; else
    fail "$name: $(head -c 400 "$dir/out")"
  fi
}
# expect_refused NAME CMD...: the command must fail (and the server must survive it).
expect_refused() {
  local name=$1
  shift
  if "$@" >"$dir/out" 2>&1; then fail "$name: the client got through"; else ok "$name"; fi
}

bash "$here/make-tls-creds.sh" "$dir/creds" >/dev/null
mkdir -p "$dir/other"
bash "$here/make-tls-creds.sh" "$dir/other" >/dev/null  # a CA the server does not use
sock=$dir/s.sock
img=$dir/disk.qcow2
qemu-img create -q -f qcow2 "$img" 64M
head -c 8M /dev/urandom >"$dir/data"

start() {
  # shellcheck disable=SC2086
  $server -k "$sock" -t -e 8 --fork --pid-file "$pid_file" "$@" "$img"
}

x509="nbds+unix:///?socket=$sock&tls-certificates=$dir/creds"
start --object "tls-creds-x509,id=tls0,dir=$dir/creds,endpoint=server" --tls-creds tls0
expect_ok "x509: nbdinfo over TLS" nbdinfo "$x509"
grep -q "with TLS" "$dir/out" || fail "x509: nbdinfo did not report TLS"
expect_ok "x509: nbdcopy file -> export" nbdcopy "$dir/data" "$x509"
expect_ok "x509: nbdcopy export -> file" nbdcopy "$x509" "$dir/back"
head -c 8M "$dir/back" | cmp -s - "$dir/data" && ok "x509: data round trip" ||
  fail "x509: data differs after the round trip"
expect_ok "x509: qemu-img info with a tls-creds object" qemu-img info \
  --object "tls-creds-x509,id=tls0,endpoint=client,dir=$dir/creds" \
  --image-opts "driver=nbd,server.type=unix,server.path=$sock,tls-creds=tls0,tls-hostname=localhost"
expect_refused "x509: client without TLS is refused" nbdinfo "nbd+unix:///?socket=$sock"
# QEMU's client shows the server's reason: qemu-nbd's words.
qemu-img info "nbd+unix:///?socket=$sock" >"$dir/out" 2>&1 || true
printf '%s\n' "qemu-img: Could not open 'nbd+unix:///?socket=$sock': TLS negotiation required before option 7 (go)" \
  "Did you forget a valid tls-creds?" "server reported: Option 0x7 not permitted before TLS" |
  cmp -s - "$dir/out" && ok "x509: qemu-img without TLS gets qemu-nbd's refusal" ||
  fail "x509: qemu-img without TLS: $(cat "$dir/out")"
# verify-peer=on (QEMU's default): a client without a certificate of the CA is refused.
mkdir -p "$dir/nocert"
cp "$dir/creds/ca-cert.pem" "$dir/nocert/"
expect_refused "x509: client without a certificate is refused (verify-peer=on)" \
  nbdinfo "nbds+unix:///?socket=$sock&tls-certificates=$dir/nocert"
expect_ok "x509: server still serves after the refusals" nbdinfo "$x509"
stop_server
[[ ! -e $sock ]] && ok "x509: socket removed on SIGTERM" || fail "x509: socket left behind"

start --object "tls-creds-x509,id=tls0,dir=$dir/creds,endpoint=server,verify-peer=off" \
  --tls-creds tls0
expect_ok "x509: verify-peer=off admits a client without a certificate" \
  nbdinfo "nbds+unix:///?socket=$sock&tls-certificates=$dir/nocert"
stop_server

# Over TCP (loopback only) the client checks the certificate against the host name; libnbd
# skips that check on Unix sockets, so the untrusted-CA case needs TCP.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
$server -b 127.0.0.1 -p "$port" -t -e 8 --fork --pid-file "$pid_file" \
  --object "tls-creds-x509,id=tls0,dir=$dir/creds,endpoint=server" --tls-creds tls0 "$img"
expect_ok "x509 over TCP: nbdinfo with the right CA" \
  nbdinfo "nbds://localhost:$port/?tls-certificates=$dir/creds"
expect_refused "x509 over TCP: client trusting another CA is refused" \
  nbdinfo "nbds://localhost:$port/?tls-certificates=$dir/other"
expect_ok "x509 over TCP: server still serves" nbdinfo "nbds://localhost:$port/?tls-certificates=$dir/creds"
stop_server

psk="nbds+unix://qblock@/?socket=$sock&tls-psk-file=$dir/creds/keys.psk"
start --object "tls-creds-psk,id=tls0,dir=$dir/creds,endpoint=server" --tls-creds tls0
expect_ok "psk: nbdinfo over TLS" nbdinfo "$psk"
expect_ok "psk: nbdcopy export -> file" nbdcopy "$psk" "$dir/back2"
head -c 8M "$dir/back2" | cmp -s - "$dir/data" && ok "psk: data read back" ||
  fail "psk: data differs"
expect_refused "psk: wrong key is refused" \
  nbdinfo "nbds+unix://qblock@/?socket=$sock&tls-psk-file=$dir/other/keys.psk"
expect_refused "psk: unknown identity is refused" \
  nbdinfo "nbds+unix://nobody@/?socket=$sock&tls-psk-file=$dir/creds/keys.psk"
expect_ok "psk: server still serves after the refusals" nbdinfo "$psk"
stop_server

# A client that connects and then says nothing (or stops in the middle of the TLS handshake)
# is dropped after --handshake-limit, so it cannot hold the only slot of -e 1 for ever.
start --object "tls-creds-x509,id=tls0,dir=$dir/creds,endpoint=server" --tls-creds tls0 --handshake-limit=1 -e 1
stalled_client() {  # $1 = bytes to send after the greeting (hex), then go quiet
  python3 - "$sock" "$1" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
s.recv(18)
s.sendall(bytes.fromhex(sys.argv[2]))
start = time.time()
while s.recv(4096):
    pass
print(f"dropped after {time.time() - start:.1f}s")
sys.exit(0 if time.time() - start < 5 else 1)
PY
}
# Client flags, then NBD_OPT_STARTTLS, then nothing: the server waits for a ClientHello.
stalled_client "00000003" >"$dir/out" 2>&1 && ok "stalled greeting dropped ($(cat "$dir/out"))" ||
  fail "stalled greeting: $(cat "$dir/out")"
stalled_client "00000003""49484156454f5054""00000005""00000000" >"$dir/out" 2>&1 &&
  ok "stalled TLS handshake dropped ($(cat "$dir/out"))" || fail "stalled TLS handshake: $(cat "$dir/out")"
expect_ok "the slot is free again for a real client" nbdinfo "$x509"
stop_server

if qemu-img check "$img" >"$dir/out" 2>&1; then ok "image passes qemu-img check"; else
  fail "qemu-img check: $(cat "$dir/out")"
fi
expect_refused "missing credentials are reported at startup" \
  $server -k "$sock" --object "tls-creds-x509,id=tls0,dir=$dir/nonexistent,endpoint=server" \
  --tls-creds tls0 "$img"

if ((failures > 0)); then
  echo "$failures failure(s)"
  exit 1
fi
echo "all TLS cases passed"
