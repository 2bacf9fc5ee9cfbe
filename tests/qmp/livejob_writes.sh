#!/bin/bash
# Guest writes during a live backup and a live active commit: `qblock storage-daemon`
# exports an image over NBD while four qemu-io clients write (data and write-zeroes, disjoint
# quarters, seeded) through the export.
# - blockdev-backup sync=full (throttled, so that the writes land during the copy): the
#   target must equal a copy of the source taken before the job started (copy-before-write),
#   the source must equal a raw model of every acknowledged write.
# - block-commit of the active layer into its base (throttled): after block-job-complete the
#   export is on the base, which must equal the model; the overlay (what the guest saw before
#   the pivot) too.
# Every image passes qemu-img check.
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

check() {  # check IMAGE...
  for img in "$@"; do qemu-img check -q "$img" || { echo "check failed: $img"; status=1; }; done
}

# ---- backup ----
prepare backup
qemu-img create -q -f qcow2 "$DIR/src.qcow2" 64M
qemu-io -c 'write -P 0x11 0 24M' -c 'write -z 30M 2M' -c 'write -P 0x33 40M 8M' \
  "$DIR/src.qcow2" >/dev/null
cp "$DIR/src.qcow2" "$DIR/start.qcow2"
qemu-img create -q -f qcow2 "$DIR/dst.qcow2" 64M
qemu-img convert -O raw "$DIR/src.qcow2" "$DIR/model.raw"
apply_model "$DIR/model.raw"
{
  echo '{"execute":"qmp_capabilities"}'
  echo '{"execute":"blockdev-backup","arguments":{"job-id":"j","device":"src","target":"dst","sync":"full","speed":1048576}}'
  echo "${WRITERS//EXPORT/src}"
  echo '{"execute":"query-jobs"}'
  echo '{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}'
  echo 'wait BLOCK_JOB_COMPLETED'
  echo '{"execute":"query-block-exports"}'
  echo '{"execute":"quit"}'
} >"$DIR/script.qmp"
echo "== backup"
daemon src \
  --blockdev driver=qcow2,node-name=src,file.driver=file,file.filename="$DIR/src.qcow2" \
  --blockdev driver=qcow2,node-name=dst,file.driver=file,file.filename="$DIR/dst.qcow2"
# The writes must have overlapped the copy.
((overlapped)) || status=1
echo "target against the source at the start:"
qemu-img compare "$DIR/start.qcow2" "$DIR/dst.qcow2" || status=1
echo "source against the model:"
qemu-img compare "$DIR/model.raw" "$DIR/src.qcow2" || status=1
check "$DIR/src.qcow2" "$DIR/dst.qcow2"

# ---- active commit ----
prepare commit
qemu-img create -q -f qcow2 "$DIR/base.qcow2" 64M
qemu-io -c 'write -P 0x11 0 24M' -c 'write -P 0x12 50M 8M' "$DIR/base.qcow2" >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$DIR/top.qcow2"
qemu-io -c 'write -P 0x33 8M 16M' -c 'write -z 52M 1M' -c 'write -P 0x34 40M 8M' \
  "$DIR/top.qcow2" >/dev/null
qemu-img convert -O raw "$DIR/top.qcow2" "$DIR/model.raw"
apply_model "$DIR/model.raw"
{
  echo '{"execute":"qmp_capabilities"}'
  echo '{"execute":"block-commit","arguments":{"job-id":"j","device":"top","speed":1048576}}'
  echo "${WRITERS//EXPORT/top}"
  echo '{"execute":"query-jobs"}'
  echo '{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}'
  echo 'wait BLOCK_JOB_READY'
  echo '{"execute":"block-job-complete","arguments":{"device":"j"}}'
  echo 'wait BLOCK_JOB_COMPLETED'
  echo '{"execute":"query-block-exports"}'
  echo '{"execute":"quit"}'
} >"$DIR/script.qmp"
echo "== active commit"
daemon top \
  --blockdev driver=qcow2,node-name=top,file.driver=file,file.filename="$DIR/top.qcow2"
((overlapped)) || status=1
grep -q '"node-name": "#block' "$DIR/transcript" || { echo "the export is not on the base"; status=1; }
echo "base against the model:"
qemu-img compare -f raw -F qcow2 "$DIR/model.raw" "$DIR/base.qcow2" 2>&1 || status=1
echo "overlay against the model:"
qemu-img compare -f raw -F qcow2 "$DIR/model.raw" "$DIR/top.qcow2" 2>&1 || status=1
check "$DIR/base.qcow2" "$DIR/top.qcow2"
exit $status
