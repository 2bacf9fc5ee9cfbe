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

# writes SEED QUARTER: a qemu-io command list in the quarter's 16 MiB.
writes() {
  python3 - "$1" "$2" <<'PY'
import random, sys
rng = random.Random(int(sys.argv[1]) * 10 + int(sys.argv[2]))
base = int(sys.argv[2]) << 24
for _ in range(60):
    off = base + rng.randrange(0, (16 << 20) // 512 - 512) * 512
    n = rng.randrange(1, 512) * 512
    if rng.random() < 0.2:
        print("-c 'write -z %d %d'" % (off, n))
    else:
        print("-c 'write -P %d %d %d'" % (rng.randrange(1, 256), off, n))
PY
}

# daemon NAME EXPORTED-NODE BLOCKDEV...: runs $DIR/script.qmp against a daemon exporting the
# node; the transcript goes to $DIR/transcript.
daemon() {
  local node=$1
  shift
  "$QBLOCK" storage-daemon "$@" \
    --nbd-server addr.type=unix,addr.path="$DIR/nbd.sock" \
    --export type=nbd,id=e,node-name="$node",writable=on \
    --chardev socket,id=m,path="$DIR/qmp.sock",server=on,wait=off --monitor chardev=m \
    >"$DIR/daemon.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do [ -S "$DIR/qmp.sock" ] && break; sleep 0.05; done
  timeout 60 python3 "$HERE/qmp_client.py" "$DIR/qmp.sock" "$DIR/script.qmp" >"$DIR/transcript" 2>&1
  wait $pid
  echo "daemon exit status $?"
  cat "$DIR/daemon.log"
  grep -q '^240$' "$DIR/transcript" || { echo "not every write was acknowledged"; status=1; }
  # The writes must have overlapped the copy: the job was still running after them.
  if ! grep -q '"status": "running", "total-progress"' "$DIR/transcript"; then
    echo "the job was no longer running when the writes ended"
    grep -E 'query-jobs' -A1 "$DIR/transcript"
    status=1
  fi
}

WRITERS="shell for q in 0 1 2 3; do eval qemu-io -f raw \$(cat \$DIR/w\$q) \"'nbd+unix:///EXPORT?socket=\$DIR/nbd.sock'\" >\$DIR/io\$q.log 2>&1 & done; wait; cat \$DIR/io*.log | grep -c '^wrote'"

prepare() {  # prepare NAME: $DIR with the seeded writes w0..w3
  DIR=$TOP/$1
  export DIR
  mkdir -p "$DIR"
  for q in 0 1 2 3; do writes $RANDOM $q >"$DIR/w$q"; done
}

apply_model() {  # apply_model RAW
  for q in 0 1 2 3; do eval qemu-io -f raw $(cat "$DIR/w$q") "$1" >/dev/null; done
}

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
  echo '{"execute":"blockdev-backup","arguments":{"job-id":"j","device":"src","target":"dst","sync":"full","speed":16777216}}'
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
  echo '{"execute":"block-commit","arguments":{"job-id":"j","device":"top","speed":8388608}}'
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
grep -q '"node-name": "#block' "$DIR/transcript" || { echo "the export is not on the base"; status=1; }
echo "base against the model:"
qemu-img compare -f raw -F qcow2 "$DIR/model.raw" "$DIR/base.qcow2" 2>&1 || status=1
echo "overlay against the model:"
qemu-img compare -f raw -F qcow2 "$DIR/model.raw" "$DIR/top.qcow2" 2>&1 || status=1
check "$DIR/base.qcow2" "$DIR/top.qcow2"
exit $status
