#!/bin/bash
# The storage daemon's NBD server with TLS: runs daemon_tls.qmp against qemu-storage-daemon 7.2
# and `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock), both started with the
# same tls-creds objects, and compares the normalised transcripts (QMP replies, and what
# qemu-img/qemu-io see over TLS and without it). Needs certtool (gnutls-bin).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
. "$HERE/../qmp/daemon_pair.rc"
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
  wait_for_socket "$DIR/qmp.sock" 400
  {
    timeout 120 python3 "$HERE/../qmp/qmp_client.py" "$DIR/qmp.sock" "$HERE/daemon_tls.qmp"
    await_quit $pid
    sed "s|$DIR|\$DIR|g" "$DIR/daemon.log"
    qemu-img check "$DIR/a.qcow2" 2>&1 | sed "s|$DIR|\$DIR|g"
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "transcripts"
