#!/bin/bash
# Runs backup.qmp (blockdev-backup's argument checks; sync=full of an NBD-exported source with
# guest writes during the copy, sync=top, sync=none) against qemu-storage-daemon 7.2 and
# `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock) and compares the
# transcripts, progress figures normalised; then checks the images each one leaves: the
# full backup equals the source as it was at the job's start, `qemu-img check` is clean.
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
  (
    cd "$DIR" || exit 1
    qemu-img create -q -f qcow2 back.qcow2 64M
    qemu-io -c 'write -P 0x44 0 8M' back.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b back.qcow2 -F qcow2 src.qcow2
    qemu-io -c 'write -P 0x11 0 4M' -c 'write -z 8M 4M' -c 'write -P 0x22 20M 2M' \
      -c 'write -P 0x33 60M 4M' src.qcow2 >/dev/null
    cp src.qcow2 src0.qcow2  # the source at the job's start
    qemu-img create -q -f qcow2 dst.qcow2 64M
    qemu-img create -q -f qcow2 small.qcow2 32M
    qemu-img create -q -f qcow2 -b back.qcow2 -F qcow2 top.qcow2
    qemu-io -c 'write -P 0x55 2M 1M' -c 'write -z 5M 1M' top.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b back.qcow2 -F qcow2 topdst.qcow2
  )
  {
    run_qmp_script "$HERE/backup.qmp" "$@"
    check_images src dst top topdst
    echo "full backup against the source at the start:"
    qemu-img compare "$DIR/src0.qcow2" "$DIR/dst.qcow2"
    echo "sync=top backup against the overlay:"
    qemu-img compare "$DIR/top.qcow2" "$DIR/topdst.qcow2"
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "backup transcripts"
