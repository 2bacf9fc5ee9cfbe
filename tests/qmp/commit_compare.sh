#!/bin/bash
# Runs commit.qmp (block-commit's argument checks, an intermediate commit, an active commit of
# an NBD-exported image with guest writes during the job) against qemu-storage-daemon 7.2 and
# `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock) and compares the
# transcripts, progress figures normalised; then checks the images each one leaves: the
# chain after the commits, `qemu-img check`, and the base's content.
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
    qemu-img create -q -f qcow2 base.qcow2 64M
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    qemu-img create -q -f qcow2 other.qcow2 64M
    qemu-io -c 'write -P 0x11 0 4M' -c 'write -P 0x12 30M 1M' base.qcow2 >/dev/null
    qemu-io -c 'write -P 0x22 2M 4M' -c 'write -z 30M 512k' mid.qcow2 >/dev/null
    qemu-io -c 'write -P 0x33 5M 2M' -c 'write -z 10M 1M' -c 'write -P 0x34 20M 3M' top.qcow2 >/dev/null
  )
  {
    run_qmp_script "$HERE/commit.qmp" "$@"
    # How many clusters the base allocates differs: zeros committed into it are unmapped by
    # qblock (nothing below the base), kept as zero clusters by QEMU; the reads below check
    # what it holds.
    check_images base mid top | sed -e 's|^[0-9]*/1024 = [0-9.]*% allocated|N/1024 allocated|'
    qemu-img info --backing-chain "$DIR/top.qcow2" | grep -E '^(image|backing file):' |
      sed -e "s|$DIR|\$DIR|g"
    # The base holds every layer's data and the guest writes, before and after the pivot.
    qemu-io -r -c 'read -P 0x11 0 1M' -c 'read -P 0x5a 1M 1M' -c 'read -P 0x22 2M 3M' \
      -c 'read -P 0 5M 64k' -c 'read -P 0x33 6M 1M' -c 'read -P 0 10M 1M' \
      -c 'read -P 0x34 20M 3M' -c 'read -P 0 30M 512k' -c 'read -P 0x12 31232k 512k' \
      -c 'read -P 0x77 40M 1M' "$DIR/base.qcow2" | grep -v ops/sec
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "commit transcripts"
