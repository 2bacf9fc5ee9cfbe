#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: builds nothing itself (the Makefile builds the
# release binary first), then uses qblock on a real image and shows what it did, with QEMU's
# own tools as the outside judge where they are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
QBLOCK=${QBLOCK:-build/release/bin/qblock}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
img=$work/disk.raw

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Create a 64 MiB raw image (sparse) and look at it"
run truncate -s 64M "$img"
run "$QBLOCK" io -f raw -c info -c length -c map "$img"

step "Write guest data with patterns, FUA, vectored and asynchronous requests"
run "$QBLOCK" io -f raw \
  -c 'write -P 0x11 0 1M' \
  -c 'write -f -P 0x22 4M 64k' \
  -c 'writev -P 0x33 8M 4k 8k 16k' \
  -c 'aio_write -P 0x44 16M 128k' -c 'aio_write -P 0x45 17M 128k' -c aio_flush \
  "$img"

step "Read it back and verify every pattern"
run "$QBLOCK" io -f raw -r \
  -c 'read -P 0x11 0 1M' -c 'read -P 0x22 4M 64k' -c 'readv -P 0x33 8M 28k' \
  -c 'read -P 0x44 16M 128k' -c 'read -P 0x45 17M 128k' -c 'read -v 4M 32' "$img"

step "Zero efficiently: write -z -n (NO_FALLBACK), -u (hole punch), -a (ALLOCATE)"
run "$QBLOCK" io -f raw -c 'write -z -n 0 512k' -c 'write -z -u 512k 512k' \
  -c 'write -z -a 32M 1M' -c 'read -P 0 0 1M' "$img"
echo "allocated on disk: $(du -k "$img" | cut -f1) KiB of 65536 KiB"

if command -v qemu-io >/dev/null; then
  step "QEMU reads what qblock wrote"
  run qemu-io -f raw -r -c 'read -P 0x22 4M 64k' -c 'read -P 0x45 17M 128k' -c 'read -P 0 0 1M' "$img"
fi

step "Error injection through blkdebug: the first write fails, the image is untouched"
"$QBLOCK" io -c 'write -P 0x99 0 4k' -c 'read -P 0 0 4k' \
  "json:{'driver':'raw','file':{'driver':'blkdebug','image':{'driver':'file','filename':'$img'},'inject-error':[{'event':'write_aio','once':true}]}}" || true

step "Benchmark: 4 KiB O_DIRECT writes, 16 in flight (qemu-img bench syntax)"
fallocate -l 256M "$work/bench.raw"
run "$QBLOCK" bench -f raw -t none -w -c 50000 -d 16 -s 4k "$work/bench.raw"
if command -v qemu-img >/dev/null; then
  run qemu-img bench -f raw -t none -i io_uring -w -c 50000 -d 16 -s 4k "$work/bench.raw"
fi

step "Done: the images in $work are removed now"
