#!/usr/bin/env bash
# The NBD client's TLS (tls-creds=ID with --object tls-creds-x509|tls-creds-psk,
# endpoint=client) against qemu-nbd 7.2 and `qblock nbd` serving with TLS: every case runs the
# same command through qblock and through QEMU's tool (qemu-img / qemu-io) and compares output
# and exit status; where libnbd and QEMU's TLS code word a certificate failure differently only
# the exit status is compared. Servers listen on Unix sockets and on 127.0.0.1 only.
#
# Environment: QBLOCK (the qblock binary; required), NBD_KEEP (lib.sh). NBD_SERVER is ignored:
# both servers are run.
# shellcheck disable=SC2317  # the case functions are called through run_case
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
for tool in qemu-img qemu-io qemu-nbd python3 certtool; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
echo "# client: $QBLOCK; scratch $WORK"
bash "$here/make-tls-creds.sh" "$WORK/creds" >/dev/null || exit 2
bash "$here/make-tls-creds.sh" "$WORK/other" >/dev/null || exit 2
mkdir -p "$WORK/nocert"
cp "$WORK/creds/ca-cert.pem" "$WORK/nocert/"
qemu-img create -q -f qcow2 "$WORK/disk.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x5a 1M 1M' "$WORK/disk.qcow2" >/dev/null

X509=(--object "tls-creds-x509,id=tc,dir=$WORK/creds,endpoint=client")
PSK=(--object "tls-creds-psk,id=tc,dir=$WORK/creds,endpoint=client,username=qblock")
untimed() { grep -v ' ops; ' | grep -v 'ops/sec'; }

# same TOOL ARGS...: `qblock TOOL ARGS` and the QEMU tool agree on output and exit status
# (TOOL: info, map, ... for qemu-img; io for qemu-io).
same() {
  local tool=$1 rc1 rc2
  shift
  local ref=(qemu-img "$tool")
  [[ $tool == io ]] && ref=(qemu-io)
  "$QBLOCK" "$tool" "$@" 2>&1 | untimed >"$WORK/q.out"
  rc1=${PIPESTATUS[0]}
  "${ref[@]}" "$@" 2>&1 | untimed >"$WORK/r.out"
  rc2=${PIPESTATUS[0]}
  if ((rc1 != rc2)); then
    why "$tool: exit $rc1, QEMU's exits $rc2: $(head -c 300 "$WORK/q.out")"
    return 1
  fi
  if [[ -z ${STATUS_ONLY:-} ]] && ! cmp -s "$WORK/q.out" "$WORK/r.out"; then
    why "$tool output differs: $(diff "$WORK/q.out" "$WORK/r.out" | head -n 6 | tr '\n' ' ')"
    return 1
  fi
}

# The server under test: SERVER is "qemu-nbd" or "$QBLOCK nbd".
serve() {  # serve NAME ARGS...
  local name=$1
  shift
  read -r -a NBD_SERVER_CMD <<<"$SERVER"
  start_server "$name" -t -e 8 -f qcow2 --cache=writeback "$@" "$WORK/disk.qcow2"
}
x509_server() { echo --object "tls-creds-x509,id=ts,dir=$WORK/creds,endpoint=server" --tls-creds ts; }
unix_opts() { echo "driver=nbd,server.type=unix,server.path=$WORK/$1.sock"; }

c_x509_unix() {
  # shellcheck disable=SC2046
  serve xu $(x509_server) || return 1
  local o
  o="$(unix_opts xu),tls-creds=tc,tls-hostname=localhost"
  same info "${X509[@]}" --image-opts "$o" || return 1
  same map "${X509[@]}" --output=json --image-opts "$o" || return 1
  same io "${X509[@]}" -c 'read -P 0x5a 1M 1M' -c 'write -P 0x33 4M 64k' --image-opts "$o" ||
    return 1
  same io "${X509[@]}" -c 'read -P 0x33 4M 64k' \
    "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$WORK/xu.sock\"},\"tls-creds\":\"tc\",\"tls-hostname\":\"localhost\"}" ||
    return 1
  # Refusals: no TLS (QEMU's message naming the server's reason), no hostname on a Unix
  # socket, an unknown id, server credentials, a client without a certificate.
  same info "nbd+unix:///?socket=$WORK/xu.sock" || return 1
  same io -c 'read 0 4k' --image-opts "$(unix_opts xu)" || return 1
  same info "${X509[@]}" --image-opts "$(unix_opts xu),tls-creds=tc" || return 1
  same info "${X509[@]}" --image-opts "$(unix_opts xu),tls-creds=nope" || return 1
  same info --object "tls-creds-x509,id=tc,dir=$WORK/creds,endpoint=server" \
    --image-opts "$(unix_opts xu),tls-creds=tc" || return 1
  STATUS_ONLY=1 same info --object "tls-creds-x509,id=tc,dir=$WORK/nocert,endpoint=client" \
    --image-opts "$(unix_opts xu),tls-creds=tc,tls-hostname=localhost" || return 1
  STATUS_ONLY=1 same info --object "tls-creds-x509,id=tc,dir=$WORK/other,endpoint=client" \
    --image-opts "$(unix_opts xu),tls-creds=tc,tls-hostname=localhost" || return 1
  stop_server xu
}

c_x509_tcp() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # start_server adds -k; a TCP server runs on its own here.
  read -r -a cmd <<<"$SERVER"
  # shellcheck disable=SC2046
  "${cmd[@]}" -b 127.0.0.1 -p "$port" -t -e 8 -f qcow2 --fork --pid-file "$WORK/tcp.pid" \
    $(x509_server) "$WORK/disk.qcow2" >"$WORK/tcp.log" 2>&1 || { why "TCP server did not start"; return 1; }
  local o="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$port,tls-creds=tc"
  local r=0
  same info "${X509[@]}" --image-opts "$o" || r=1
  ((r)) || same io "${X509[@]}" -c 'read -P 0x5a 1M 1M' --image-opts "$o" || r=1
  # A client trusting another CA is refused.
  ((r)) || STATUS_ONLY=1 same info --object "tls-creds-x509,id=tc,dir=$WORK/other,endpoint=client" \
    --image-opts "$o" || r=1
  # The next case opens the same image: wait until this server has let go of its lock.
  local pid
  pid=$(cat "$WORK/tcp.pid")
  kill -TERM "$pid"
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && { why "TCP server still running 10 s after SIGTERM"; kill -9 "$pid"; r=1; }
  return $r
}

c_psk() {
  serve ps --object "tls-creds-psk,id=ts,dir=$WORK/creds,endpoint=server" --tls-creds ts ||
    return 1
  local o
  o="$(unix_opts ps),tls-creds=tc"
  same info "${PSK[@]}" --image-opts "$o" || return 1
  same io "${PSK[@]}" -c 'read -P 0x5a 1M 1M' --image-opts "$o" || return 1
  same info --object "tls-creds-psk,id=tc,dir=$WORK/creds,endpoint=client" \
    --image-opts "$o" || return 1 # username qemu is not in keys.psk
  STATUS_ONLY=1 same info \
    --object "tls-creds-psk,id=tc,dir=$WORK/other,endpoint=client,username=qblock" \
    --image-opts "$o" || return 1 # the wrong key
  stop_server ps
}

c_tls_client_plain_server() {
  serve pl || return 1
  same info "${X509[@]}" --image-opts "$(unix_opts pl),tls-creds=tc,tls-hostname=localhost" ||
    return 1
  stop_server pl
}

for SERVER in qemu-nbd "$QBLOCK nbd"; do
  tag=$([[ $SERVER == qemu-nbd ]] && echo qemu-nbd || echo qblock-nbd)
  run_case "$tag: x509 over a Unix socket" c_x509_unix
  run_case "$tag: x509 over TCP (127.0.0.1)" c_x509_tcp
  run_case "$tag: psk" c_psk
  run_case "$tag: TLS client, plain server" c_tls_client_plain_server
done
if ! qemu-img check -q "$WORK/disk.qcow2"; then
  echo "FAIL - qemu-img check of the served image"
  exit 1
fi
finish
