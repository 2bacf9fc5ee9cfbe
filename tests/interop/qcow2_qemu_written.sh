#!/usr/bin/env bash
# Images written by QEMU read back identically through qblock: plain, zero clusters,
# backing chains, and compressed clusters (zlib and zstd, made by qemu-img convert -c).
# A write into a compressed cluster then turns it into a normal one, and qemu-img check
# stays clean. Environment: QBLOCK (the qblock binary).
set -euo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-qemu-written.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
passed=0 failed=0
check() {  # check NAME IMAGE: qblock's view of every byte equals QEMU's
  local a b
  a=$("$QBLOCK" io -r -c "read -v 0 8M" "$2" | head -n -2 | md5sum)
  b=$(qemu-io -r -U -c "read -v 0 8M" "$2" | head -n -2 | md5sum)
  if [[ $a == "$b" ]]; then passed=$((passed + 1)); echo "ok $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}
head -c 2M /dev/urandom > random.bin
qemu-img create -q -f qcow2 base.qcow2 8M
qemu-io -c 'write -P 7 0 1M' -c 'write -s random.bin 5M 2M' -c 'write -z 512k 128k' base.qcow2 >/dev/null
check plain base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 9 3M 200k' -c 'write -z -u 0 64k' -c 'write -P 3 5100k 8k' top.qcow2 >/dev/null
check backing-chain top.qcow2
for type in zlib zstd; do
  qemu-img convert -c -O qcow2 -o compression_type=$type top.qcow2 c-$type.qcow2
  check "compressed-$type" c-$type.qcow2
  "$QBLOCK" io -c 'write -P 1 100k 4k' -c 'write -P 2 5M 1k' c-$type.qcow2 >/dev/null
  qemu-io -c 'write -P 1 100k 4k' -c 'write -P 2 5M 1k' top.qcow2 >/dev/null
  if qemu-img check -q c-$type.qcow2 && qemu-img compare -q top.qcow2 c-$type.qcow2; then
    passed=$((passed + 1)); echo "ok cow-from-compressed-$type"
  else
    failed=$((failed + 1)); echo "FAIL cow-from-compressed-$type"
  fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
