#!/bin/bash
# Runs sequence.qmp (or $1) against qemu-storage-daemon 7.2 and `qblock storage-daemon`
# ($QBLOCK, default build/debug/bin/qblock) and compares the normalised transcripts, then
# checks the image each one leaves (qemu-img check; the data written over NBD).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
SCRIPT=${1:-$HERE/sequence.qmp}
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
. "$HERE/daemon_pair.rc"

run() {  # run NAME DAEMON...
  local name=$1
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  qemu-img create -q -f qcow2 "$DIR/a.qcow2" 64M
  "$@" --chardev socket,id=m,path="$DIR/qmp.sock",server=on,wait=off --monitor chardev=m \
    --pidfile "$DIR/pid" >"$DIR/daemon.log" 2>&1 &
  local pid=$!
  wait_for_socket "$DIR/qmp.sock"
  {
    timeout 120 python3 "$HERE/qmp_client.py" "$DIR/qmp.sock" "$SCRIPT"
    # The script ends with "quit"; a daemon still running after that is a failure.
    await_quit $pid
    cat "$DIR/daemon.log"
    [ -e "$DIR/pid" ] && echo "pid file left behind"
    qemu-img check "$DIR/a.qcow2" 2>&1 | sed "s|$DIR|\$DIR|g"
    qemu-img info --output=json "$DIR/a.qcow2" | grep '"virtual-size"'
    qemu-io -r -c 'read -P 0x5a 1M 1M' -c 'read -P 0 0 1M' "$DIR/a.qcow2" | grep -v ops/sec
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "qmp transcripts"
