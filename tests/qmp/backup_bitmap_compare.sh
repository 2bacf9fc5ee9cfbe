#!/bin/bash
# Runs backup_bitmap.qmp (blockdev-backup with sync=incremental and sync=bitmap, each
# bitmap-mode, a cancelled job, the bitmap busy meanwhile) against qemu-storage-daemon 7.2 and
# `qblock storage-daemon` ($QBLOCK, default build/debug/bin/qblock) and compares the
# transcripts, progress figures normalised, and then what each leaves: every target's
# contents (as a checksum of its raw bytes: both daemons must have copied the same clusters),
# `qemu-img check` of every image, and the persistent bitmap stored in the source.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
. "$HERE/daemon_pair.rc"
export QMP_JOB_PROGRESS=any
targets="full inc1 inc2 never cancel"

run() {  # run NAME DAEMON...
  local name=$1 t
  shift
  export DIR=$TOP/$name
  mkdir -p "$DIR"
  (
    cd "$DIR" || exit 1
    qemu-img create -q -f qcow2 src.qcow2 64M
    qemu-io -c 'write -P 0x11 0 64M' src.qcow2 >/dev/null
    for t in $targets; do qemu-img create -q -f qcow2 "$t.qcow2" 64M; done
  )
  {
    run_qmp_script "$HERE/backup_bitmap.qmp" "$@"
    # shellcheck disable=SC2086
    check_images src $targets
    for t in $targets; do
      qemu-img convert -O raw "$DIR/$t.qcow2" "$DIR/$t.raw"
      echo "$t: $(md5sum <"$DIR/$t.raw" | cut -d' ' -f1)"
      rm -f "$DIR/$t.raw"
    done
    qemu-img info "$DIR/src.qcow2" | sed -n '/bitmaps:/,$p'
  } >"$TOP/$name.out" 2>&1
}

compare_daemons "backup with bitmaps transcripts"
