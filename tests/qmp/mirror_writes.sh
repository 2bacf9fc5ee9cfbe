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

for mode in background write-blocking; do
  DIR=$TOP/$mode
  export DIR
  mkdir -p "$DIR"
  qemu-img create -q -f qcow2 "$DIR/src.qcow2" 64M
  qemu-io -c 'write -P 0x11 0 24M' -c 'write -P 0x33 40M 8M' "$DIR/src.qcow2" >/dev/null
  qemu-img create -q -f qcow2 "$DIR/dst.qcow2" 64M
  qemu-img convert -O raw "$DIR/src.qcow2" "$DIR/model.raw"
  for q in 0 1 2 3; do writes $RANDOM $q >"$DIR/w$q"; done
  for q in 0 1 2 3; do eval qemu-io -f raw $(cat "$DIR/w$q") "$DIR/model.raw" >/dev/null; done
  {
    echo '{"execute":"qmp_capabilities"}'
    echo '{"execute":"blockdev-mirror","arguments":{"job-id":"j","device":"src","target":"dst","sync":"full","speed":16777216,"copy-mode":"'$mode'"}}'
    echo "shell for q in 0 1 2 3; do eval qemu-io -f raw \$(cat \$DIR/w\$q) \"'nbd+unix:///src?socket=\$DIR/nbd.sock'\" >\$DIR/io\$q.log 2>&1 & done; wait; cat \$DIR/io*.log | grep -c '^wrote'"
    echo '{"execute":"query-jobs"}'
    echo '{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}'
    echo 'wait BLOCK_JOB_READY'
    echo '{"execute":"block-job-complete","arguments":{"device":"j"}}'
    echo 'wait BLOCK_JOB_COMPLETED'
    echo '{"execute":"query-block-exports"}'
    echo '{"execute":"quit"}'
  } >"$DIR/script.qmp"
  "$QBLOCK" storage-daemon \
    --blockdev driver=qcow2,node-name=src,file.driver=file,file.filename="$DIR/src.qcow2" \
    --blockdev driver=qcow2,node-name=dst,file.driver=file,file.filename="$DIR/dst.qcow2" \
    --nbd-server addr.type=unix,addr.path="$DIR/nbd.sock" \
    --export type=nbd,id=e,node-name=src,writable=on \
    --chardev socket,id=m,path="$DIR/qmp.sock",server=on,wait=off --monitor chardev=m \
    >"$DIR/daemon.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [ -S "$DIR/qmp.sock" ] && break; sleep 0.05; done
  timeout 60 python3 "$HERE/qmp_client.py" "$DIR/qmp.sock" "$DIR/script.qmp" >"$DIR/transcript" 2>&1
  wait $pid
  echo "== $mode: daemon exit status $?"
  cat "$DIR/daemon.log"
  grep -E '"status": "running"|^240$|BLOCK_JOB_COMPLETED|node-name' "$DIR/transcript" | head -5
  # The writes must have overlapped the copy: the job was still running after them.
  if ! grep -q '"status": "running", "total-progress"' "$DIR/transcript"; then
    echo "the mirror was no longer running when the writes ended"
    grep -E 'query-jobs' -A1 "$DIR/transcript"
  fi
  qemu-img compare "$DIR/model.raw" "$DIR/dst.qcow2" || status=1
  qemu-img check "$DIR/dst.qcow2" || status=1
  grep -q '^240$' "$DIR/transcript" || { echo "not every write was acknowledged"; status=1; }
done
exit $status
