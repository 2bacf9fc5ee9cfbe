#!/bin/bash
# The storage daemon's NBD server with TLS: runs daemon_tls.qmp against qemu-storage-daemon 7.2
# and `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock), both started with the
# same tls-creds objects, and compares the normalised transcripts (QMP replies, and what
# qemu-img/qemu-io see over TLS and without it). Needs certtool (gnutls-bin).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon missing: skipped"; exit 77; }
TOP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TOP"' EXIT
bash "$HERE/make-tls-creds.sh" "$TOP/creds" >/dev/null || exit 2

run() {  # run NAME DAEMON...
  local name=$1
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  cp -r "$TOP/creds" "$DIR/creds"
  qemu-img create -q -f qcow2 "$DIR/a.qcow2" 64M
  "$@" --object "tls-creds-x509,id=t,dir=$DIR/creds,endpoint=server" \
    --object "tls-creds-x509,id=c,dir=$DIR/creds,endpoint=client" \
    --object "tls-creds-psk,id=p,dir=$DIR/creds,endpoint=server" \
    --chardev socket,id=m,path="$DIR/qmp.sock",server=on,wait=off --monitor chardev=m \
    --pidfile "$DIR/pid" >"$DIR/daemon.log" 2>&1 &
  local pid=$!
  for _ in $(seq 400); do [ -S "$DIR/qmp.sock" ] && break; sleep 0.05; done
  {
    timeout 120 python3 "$HERE/../qmp/qmp_client.py" "$DIR/qmp.sock" "$HERE/daemon_tls.qmp"
    for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -0 $pid 2>/dev/null && { echo "daemon still running after quit"; kill -9 $pid; }
    wait $pid
    echo "daemon exit status: $?"
    sed "s|$DIR|\$DIR|g" "$DIR/daemon.log"
    qemu-img check "$DIR/a.qcow2" 2>&1 | sed "s|$DIR|\$DIR|g"
  } >"$TOP/$name.out" 2>&1
}

run qemu qemu-storage-daemon
run qblock "$QBLOCK" storage-daemon
if diff -u "$TOP/qemu.out" "$TOP/qblock.out"; then
  echo "transcripts identical ($(wc -l <"$TOP/qblock.out") lines)"
  exit 0
fi
exit 1
