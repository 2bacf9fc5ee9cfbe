#!/bin/bash
# Guest writes during a live mirror: `qblock storage-daemon` exports src.qcow2 over NBD and
# mirrors it onto dst.qcow2 (background, then write-blocking copy mode) while four qemu-io
# clients write (data and write-zeroes, disjoint quarters, seeded) through the export; the
# mirror completes (the export pivots onto dst) and dst must equal a raw model of every
# acknowledged write (qemu-img compare) and pass qemu-img check.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
command -v qemu-io >/dev/null || { echo "qemu-io missing: skipped"; exit 77; }
TOP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TOP"' EXIT
export QMP_JOB_PROGRESS=any
status=0

# shellcheck source=tests/qmp/guest_writers.rc
source "$HERE/guest_writers.rc"

for mode in background write-blocking; do
  prepare "$mode"
  qemu-img create -q -f qcow2 "$DIR/src.qcow2" 64M
  qemu-io -c 'write -P 0x11 0 24M' -c 'write -P 0x33 40M 8M' "$DIR/src.qcow2" >/dev/null
  qemu-img create -q -f qcow2 "$DIR/dst.qcow2" 64M
  qemu-img convert -O raw "$DIR/src.qcow2" "$DIR/model.raw"
  apply_model "$DIR/model.raw"
  {
    echo '{"execute":"qmp_capabilities"}'
    echo '{"execute":"blockdev-mirror","arguments":{"job-id":"j","device":"src","target":"dst","sync":"full","speed":1048576,"copy-mode":"'$mode'"}}'
    echo "${WRITERS//EXPORT/src}"
    echo '{"execute":"query-jobs"}'
    echo '{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}'
    echo 'wait BLOCK_JOB_READY'
    echo '{"execute":"block-job-complete","arguments":{"device":"j"}}'
    echo 'wait BLOCK_JOB_COMPLETED'
    echo '{"execute":"query-block-exports"}'
    echo '{"execute":"quit"}'
  } >"$DIR/script.qmp"
  echo "== $mode"
  daemon src \
    --blockdev driver=qcow2,node-name=src,file.driver=file,file.filename="$DIR/src.qcow2" \
    --blockdev driver=qcow2,node-name=dst,file.driver=file,file.filename="$DIR/dst.qcow2"
  grep -E '"status": "running"|^240$|BLOCK_JOB_COMPLETED|node-name' "$DIR/transcript" | head -5
  qemu-img compare "$DIR/model.raw" "$DIR/dst.qcow2" || status=1
  qemu-img check "$DIR/dst.qcow2" || status=1
done
exit $status
