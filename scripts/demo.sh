#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: builds nothing itself (the Makefile builds the
# release binary first). It shows qblock's main job on a real qcow2 image: allocating writes
# with the three ideas of the "qcow2: cluster space preallocation" design on (no zero padding
# written, preallocation ahead of the end of the file, other writes going into a new cluster
# before its L2 entry is linked), QEMU's own tools as the judge, W1 side by side against
# qemu-img bench with and without QEMU's preallocate filter, and the image served over NBD.
set -euo pipefail
cd "$(dirname "$0")/.."
QBLOCK=${QBLOCK:-build/release/bin/qblock}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-demo.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
img=$work/disk.qcow2
sock=$work/nbd.sock

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
have() { command -v "$1" >/dev/null; }
file_size() { stat -c %s "$1"; }

step "Create an 8 GiB qcow2 image (the same bytes qemu-img create writes)"
run "$QBLOCK" create -f qcow2 "$img" 8G
have qemu-img && run qemu-img info "$img"

step "Allocating writes: 4 KiB into new clusters, and two concurrent writes sharing one new cluster"
# The first write zeroes its new 64 KiB cluster with one efficient ALLOCATE write-zeroes
# (fallocate) and writes only its 4 KiB: no zero padding. The two aio_writes land in the same
# new cluster: the second goes straight into it once it is zeroed, before the first request
# links it in the L2 table, instead of waiting or allocating again.
run "$QBLOCK" io -c 'write -P 0x11 4k 4k' \
  -c 'aio_write -P 0x21 1M 4k' -c 'aio_write -P 0x22 1032k 4k' -c aio_flush \
  -c 'write -P 0x33 2M 1M' "$img"
run "$QBLOCK" map "$img"
echo "the 4 KiB writes at 1M and 1032K share one 64 KiB cluster (one mapping above)"

step "QEMU is the judge: qemu-img check and qemu-io read back what qblock wrote"
if have qemu-img && have qemu-io; then
  run qemu-img check "$img"
  run qemu-io -r -c 'read -P 0x11 4k 4k' -c 'read -P 0 0 4k' -c 'read -P 0 8k 56k' \
    -c 'read -P 0x21 1M 4k' -c 'read -P 0x22 1032k 4k' -c 'read -P 0x33 2M 1M' "$img"
else
  echo "(qemu-utils not installed: skipped)"
fi

step "Preallocation ahead of the end of the file, while the image is open"
before=$(file_size "$img")
"$QBLOCK" nbd -k "$sock" -t -f qcow2 "$img" &
server_pid=$!
for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
[[ -S $sock ]] || { echo "demo: qblock nbd did not start" >&2; exit 1; }
if have qemu-io; then
  run qemu-io -f raw -c 'write -P 0x44 64M 64k' "nbd+unix:///?socket=$sock"
fi
open_size=$(file_size "$img")
echo "file size: $before bytes before, $open_size bytes while open with a write at 64 MiB"
echo "(the preallocate filter allocated megabytes past the data, so later allocations do not grow the file)"

step "Served over NBD: nbdinfo --map sees the allocation"
if have nbdinfo; then
  run nbdinfo --map "nbd+unix:///?socket=$sock"
else
  echo "(libnbd-bin not installed: skipped)"
fi
kill -TERM "$server_pid"
wait "$server_pid" || true
server_pid=""
echo "after SIGTERM the file is trimmed back to its data: $(file_size "$img") bytes"
have qemu-img && run qemu-img check "$img"

step "W1 side by side: 4 KiB writes each into a new cluster, 16 in flight, O_DIRECT"
w1=(-w -t none -c 10000 -d 16 -s 4k -S 64k --pattern=165)
bench_secs() { sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p'; }
for round in 1 2; do
  rm -f "$work"/w1.*
  "$QBLOCK" create -q -f qcow2 "$work/w1.qblock.qcow2" 8G
  q=$("$QBLOCK" bench -f qcow2 "${w1[@]}" "$work/w1.qblock.qcow2" | bench_secs)
  line="qblock ${q}s"
  if have qemu-img; then
    qemu-img create -q -f qcow2 "$work/w1.qemu.qcow2" 8G
    qemu-img create -q -f qcow2 "$work/w1.prealloc.qcow2" 8G
    e=$(qemu-img bench -f qcow2 -i io_uring "${w1[@]}" "$work/w1.qemu.qcow2" | bench_secs)
    p=$(qemu-img bench -i io_uring "${w1[@]}" --image-opts \
      "driver=qcow2,file.driver=preallocate,file.file.filename=$work/w1.prealloc.qcow2" | bench_secs)
    line+="   qemu-img ${e}s   qemu-img with its preallocate filter ${p}s"
  fi
  echo "round $round: $line"
done
echo "(make bench-compare runs W1-W6 with full counts and medians: docs/performance.md)"

step "Done: the images in $work are removed now"
