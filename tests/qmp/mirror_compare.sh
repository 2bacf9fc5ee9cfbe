#!/bin/bash
# Runs mirror.qmp (blockdev-mirror with an NBD export pivoted onto the target, the job verbs
# in every state a mirror can be held in, the events) against qemu-storage-daemon 7.2 and
# `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock) and compares the
# transcripts, progress figures normalised; then checks both images each one leaves.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
. "$HERE/daemon_pair.rc"
export QMP_JOB_PROGRESS=any

run() {  # run NAME DAEMON...
  local name=$1
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  qemu-img create -q -f qcow2 "$DIR/src.qcow2" 64M
  qemu-io -c 'write -P 0x11 0 4M' -c 'write -z 8M 4M' -c 'write -P 0x22 20M 1M' \
    "$DIR/src.qcow2" >/dev/null
  qemu-img create -q -f qcow2 "$DIR/dst.qcow2" 64M
  {
    run_qmp_script "$HERE/mirror.qmp" "$@"
    check_images src dst
    qemu-img compare "$DIR/src.qcow2" "$DIR/dst.qcow2"
    qemu-io -r -c 'read -P 0x5a 1M 1M' -c 'read -P 0x66 2M 64k' -c 'read -P 0x22 20M 1M' \
      -c 'read -P 0 8M 4M' "$DIR/dst.qcow2" | grep -v ops/sec
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "mirror transcripts"
