#!/usr/bin/env bash
# The NBD server's TLS client authorization (--tls-authz=ID with --object authz-simple or
# authz-list) against qemu-nbd 7.2: each case runs qemu-nbd and `qblock nbd` with the same
# arguments, connects QEMU's client (qemu-img info over TLS) to each, and compares what the
# server printed, whether the client got in, and the refusals of malformed authz objects;
# then the same refusal through the storage daemons' --nbd-server tls-authz.
# Servers listen on Unix sockets in a scratch directory and are stopped by the test.
#
# Environment: QBLOCK (the qblock binary; required).
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
for tool in qemu-img qemu-nbd qemu-storage-daemon certtool; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/qblock-authz.XXXXXX")
server_pid=
trap '[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null; rm -rf "$WORK"' EXIT
bash "$here/make-tls-creds.sh" "$WORK/creds" >/dev/null || exit 2
qemu-img create -q -f raw "$WORK/d.raw" 1M
X509S="tls-creds-x509,id=t,dir=$WORK/creds,endpoint=server"
PSKS="tls-creds-psk,id=t,dir=$WORK/creds,endpoint=server"
CLIENT_X509=(--object "tls-creds-x509,id=c,dir=$WORK/creds,endpoint=client" --image-opts
  "driver=nbd,server.type=unix,server.path=$WORK/s.sock,tls-creds=c,tls-hostname=localhost")
CLIENT_PSK=(--object "tls-creds-psk,id=c,dir=$WORK/creds,endpoint=client,username=qblock"
  --image-opts "driver=nbd,server.type=unix,server.path=$WORK/s.sock,tls-creds=c")
DN="O=qblock test,CN=qblock test client"

# serve SERVER... -- CLIENT...: starts the server on $WORK/s.sock, runs qemu-img info with
# CLIENT arguments against it, stops it; prints whether the client got in and what the
# server printed.
serve() {
  local server=() client=()
  while [[ $1 != -- ]]; do server+=("$1"); shift; done
  shift
  client=("$@")
  rm -f "$WORK/s.sock"
  "${server[@]}" -k "$WORK/s.sock" -t -f raw "$WORK/d.raw" >"$WORK/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do [[ -S $WORK/s.sock ]] && break; sleep 0.05; done
  if qemu-img info "${client[@]}" >"$WORK/client.log" 2>&1; then
    echo "client: in"
  else
    echo "client: refused"
  fi
  sleep 0.2  # the server's message follows the client's disconnection
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=
  sed -e "s|$WORK|\$WORK|g" "$WORK/server.log"
}

# cases SERVER...: every case for one server implementation.
cases() {
  local s=("$@")
  echo "--- authz-simple naming the client: allowed"
  serve "${s[@]}" --object "$X509S" --object "authz-simple,id=a,identity=${DN//,/,,}" \
    --tls-creds=t --tls-authz=a -- "${CLIENT_X509[@]}"
  echo "--- authz-simple naming someone else: denied"
  serve "${s[@]}" --object "$X509S" --object "authz-simple,id=a,identity=CN=nobody" \
    --tls-creds=t --tls-authz=a -- "${CLIENT_X509[@]}"
  echo "--- authz-list, glob rule allows"
  serve "${s[@]}" --object "$X509S" --object \
    '{"qom-type":"authz-list","id":"a","policy":"deny","rules":[{"match":"O=qblock test,CN=*","policy":"allow","format":"glob"}]}' \
    --tls-creds=t --tls-authz=a -- "${CLIENT_X509[@]}"
  echo "--- authz-list as keys, a rule denies before the allowing policy"
  serve "${s[@]}" --object "$X509S" --object \
    "authz-list,id=a,policy=allow,rules.0.match=O=qblock?test*,rules.0.policy=deny,rules.0.format=glob" \
    --tls-creds=t --tls-authz=a -- "${CLIENT_X509[@]}"
  echo "--- authz-list, exact rule does not match: the policy decides"
  serve "${s[@]}" --object "$X509S" --object \
    "authz-list,id=a,policy=allow,rules.0.match=O=qblock test*,rules.0.policy=deny" \
    --tls-creds=t --tls-authz=a -- "${CLIENT_X509[@]}"
  echo "--- no such authz object"
  serve "${s[@]}" --object "$X509S" --tls-creds=t --tls-authz=nosuch -- "${CLIENT_X509[@]}"
  echo "--- PSK sessions are not judged"
  serve "${s[@]}" --object "$PSKS" --object "authz-simple,id=a,identity=CN=nobody" \
    --tls-creds=t --tls-authz=a -- "${CLIENT_PSK[@]}"
  echo "--- malformed objects and options"
  local bad
  for bad in "authz-simple,id=a" "authz-simple,id=a,identity=x,bogus=1" \
    '{"qom-type":"authz-list","id":"a","policy":"maybe"}' \
    '{"qom-type":"authz-list","id":"a","rules":[{"policy":"allow"}]}' \
    '{"qom-type":"authz-list","id":"a","rules":[{"match":"x","policy":"allow","format":"regex"}]}' \
    "authz-pam,id=a,service=x" "authz-listfile,id=a,filename=/nonexistent"; do
    "${s[@]}" --object "$bad" -f raw "$WORK/d.raw" 2>&1
    echo "exit $?"
  done
  "${s[@]}" --object "authz-simple,id=a,identity=x" --tls-authz=a -f raw "$WORK/d.raw" 2>&1
  echo "exit $?"
}

# daemon_case DAEMON...: the storage daemon's --nbd-server tls-authz refusing the client.
daemon_case() {
  echo "--- storage daemon: --nbd-server tls-authz denies"
  rm -f "$WORK/s.sock"
  "$@" --object "$X509S" --object "authz-simple,id=a,identity=CN=nobody" \
    --blockdev "driver=file,filename=$WORK/d.raw,node-name=n" \
    --nbd-server "addr.type=unix,addr.path=$WORK/s.sock,tls-creds=t,tls-authz=a" \
    --export type=nbd,id=e,node-name=n,name= >"$WORK/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do [[ -S $WORK/s.sock ]] && break; sleep 0.05; done
  qemu-img info "${CLIENT_X509[@]}" >"$WORK/client.log" 2>&1 && echo "client: in" ||
    echo "client: refused"
  sleep 0.2
  kill "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=
  cat "$WORK/server.log"
}

{
  cases qemu-nbd
  daemon_case qemu-storage-daemon
} >"$WORK/qemu.out"
{
  cases "$QBLOCK" nbd
  daemon_case "$QBLOCK" storage-daemon
} >"$WORK/qblock.out"
if ! diff -u "$WORK/qemu.out" "$WORK/qblock.out"; then
  echo "FAIL: qblock nbd's TLS authorization differs from qemu-nbd's"
  exit 1
fi
cat "$WORK/qblock.out"
echo "tls authz: $(grep -c '^---' "$WORK/qblock.out") cases identical to qemu-nbd"
