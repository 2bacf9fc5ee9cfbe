#!/bin/bash
# Runs sequence.qmp (or $1) against qemu-storage-daemon 7.2 and `qblock storage-daemon`
# ($QBLOCK, default build/debug/bin/qblock) and compares the normalised transcripts, then
# checks the image each one leaves (qemu-img check; the data written over NBD).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SCRIPT=${1:-$HERE/sequence.qmp}
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon missing: skipped"; exit 77; }
TOP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TOP"' EXIT

run() {  # run NAME DAEMON...
  local name=$1
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  qemu-img create -q -f qcow2 "$DIR/a.qcow2" 64M
  "$@" --chardev socket,id=m,path="$DIR/qmp.sock",server=on,wait=off --monitor chardev=m \
    --pidfile "$DIR/pid" >"$DIR/daemon.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do [ -S "$DIR/qmp.sock" ] && break; sleep 0.05; done
  {
    timeout 120 python3 "$HERE/qmp_client.py" "$DIR/qmp.sock" "$SCRIPT"
    # The script ends with "quit"; a daemon still running after that is a failure.
    for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    kill -0 $pid 2>/dev/null && { echo "daemon still running after quit"; kill -9 $pid; }
    wait $pid
    echo "daemon exit status: $?"
    cat "$DIR/daemon.log"
    [ -e "$DIR/pid" ] && echo "pid file left behind"
    qemu-img check "$DIR/a.qcow2" 2>&1 | sed "s|$DIR|\$DIR|g"
    qemu-img info --output=json "$DIR/a.qcow2" | grep '"virtual-size"'
    qemu-io -r -c 'read -P 0x5a 1M 1M' -c 'read -P 0 0 1M' "$DIR/a.qcow2" | grep -v ops/sec
  } >"$TOP/$name.out" 2>&1
}

run qemu qemu-storage-daemon
run qblock "$QBLOCK" storage-daemon
if diff -u "$TOP/qemu.out" "$TOP/qblock.out"; then
  echo "qmp transcripts identical ($(grep -c '^>>>' "$TOP/qemu.out") inputs)"
  exit 0
fi
exit 1
