#!/usr/bin/env bash
# Encrypted qcow2 images (encrypt.format=luks and legacy aes) both ways with QEMU 7.2:
#  - QEMU writes: qemu-img creates, qemu-io runs a random workload of misaligned writes, zero
#    writes and discards; qblock must read the image exactly as qemu-img does (both converted
#    to raw and compared).
#  - qblock writes: qblock creates (cipher algorithm x mode combinations) and runs the same
#    kind of workload; the image must pass `qemu-img check` and `qemu-img compare --object`
#    against a plain qcow2 image that qemu-io wrote with the same workload.
# With and without a backing file, cluster sizes 512, 4k, 64k and 2M, and extended L2 entries.
# Environment: QBLOCK (the qblock binary); SEED (optional).
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
. "$(dirname "$0")/../lib/qemu_img_retry.rc"
. "$(dirname "$0")/../lib/random_workload.rc"
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-qcow2-encrypted.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
RANDOM=${SEED:-134}
S="--object secret,id=s,data=astrochicken"
SIZE=$((2 * 1024 * 1024))
E() { echo "driver=qcow2,encrypt.key-secret=s,file.filename=$1"; }

make_base

# ---- QEMU writes, qblock reads ----
# qemu_writes_qblock_reads NAME: qemu-io writes a random workload into q.qcow2; qblock and
# qemu-img must read it back as the same raw bytes.
qemu_writes_qblock_reads() {
  local ok=1
  workload 20
  qemu-io $S --image-opts "${cmds[@]}" "$(E q.qcow2)" >/dev/null || ok=0
  "$QBLOCK" convert $S --image-opts "$(E q.qcow2)" -O raw qblock.raw || ok=0
  qemu-img convert $S --image-opts "$(E q.qcow2)" -O raw qemu.raw || ok=0
  cmp -s qblock.raw qemu.raw || ok=0
  ok_or_fail $ok "$1"
}

for cs in 512 4k 64k 2M; do
  for fmt in luks aes; do
    for backing in "" base.qcow2; do
      name="qemu-written $fmt cs=$cs${backing:+ backing}"
      rm -f q.qcow2 qemu.raw qblock.raw
      extra=""
      [ "$fmt" = luks ] && extra=",encrypt.iter-time=10"
      [ -n "$backing" ] && extra="$extra,backing_file=$backing,backing_fmt=qcow2"
      if ! qemu-img create -q -f qcow2 $S \
          -o cluster_size=$cs,encrypt.format=$fmt,encrypt.key-secret=s$extra q.qcow2 $SIZE; then
        ok_or_fail 0 "$name (create)"; continue
      fi
      qemu_writes_qblock_reads "$name"
    done
  done
done

# Extended L2 entries, written by QEMU.
for fmt in luks aes; do
  rm -f q.qcow2 qemu.raw qblock.raw
  extra=""
  [ "$fmt" = luks ] && extra=",encrypt.iter-time=10"
  qemu-img create -q -f qcow2 $S -o extended_l2=on,encrypt.format=$fmt,encrypt.key-secret=s$extra \
    -b base.qcow2 -F qcow2 q.qcow2 $SIZE || { ok_or_fail 0 "qemu-written $fmt extended_l2 (create)"; continue; }
  qemu_writes_qblock_reads "qemu-written $fmt extended_l2"
done

# ---- qblock writes, QEMU reads ----
# one NAME CREATE_OPTS CLUSTER BACKING: qblock creates and writes, qemu-io writes the same
# workload into a plain image, the two must compare equal.
one() {
  local name=$1 opts=$2 cs=$3 backing=$4 ok=1 extra=""
  rm -f b.qcow2 plain.qcow2
  [ -n "$backing" ] && extra=",backing_file=$backing,backing_fmt=qcow2"
  if ! "$QBLOCK" create -q -f qcow2 $S -o cluster_size=$cs,encrypt.key-secret=s,$opts$extra \
      b.qcow2 $SIZE; then
    ok_or_fail 0 "$name (create)"; return
  fi
  qemu-img create -q -f qcow2 -o cluster_size=$cs$extra plain.qcow2 $SIZE
  workload "${WL:-20}"
  "$QBLOCK" io $S --image-opts "${cmds[@]}" "$(E b.qcow2)" >out.txt 2>&1 || ok=0
  grep -q -i -e 'error' -e "can't" -e 'failed' out.txt && { ok=0; cat out.txt; }
  qemu-io "${cmds[@]}" plain.qcow2 >/dev/null || ok=0
  qemu-img check -q $S --image-opts "$(E b.qcow2)" || ok=0
  qemu-img compare -q $S --image-opts "$(E b.qcow2)" "driver=qcow2,file.filename=plain.qcow2" ||
    ok=0
  ok_or_fail $ok "$name"
}

for cs in 512 4k 64k 2M; do
  for backing in "" base.qcow2; do
    one "qblock-written aes cs=$cs${backing:+ backing}" encrypt.format=aes $cs "$backing"
    one "qblock-written luks cs=$cs${backing:+ backing}" encrypt.format=luks,encrypt.iter-time=1 \
      $cs "$backing"
  done
done
# Every cipher x mode with a shorter workload (the cluster paths are covered above).
for alg in aes-128 aes-256 serpent-128 serpent-256 twofish-128 twofish-256 cast5-128; do
  for mode in xts cbc ecb ctr; do
    [ "$alg-$mode" = cast5-128-xts ] && continue
    WL=8 one "qblock-written luks $alg-$mode" \
      encrypt.format=luks,encrypt.iter-time=1,encrypt.cipher-alg=$alg,encrypt.cipher-mode=$mode \
      64k ""
  done
done
# Extended L2 entries (qcow2-format.md §7): subcluster COW encrypted too.
for backing in "" base.qcow2; do
  one "qblock-written aes extended_l2${backing:+ backing}" extended_l2=on,encrypt.format=aes 64k "$backing"
  one "qblock-written luks extended_l2 32k${backing:+ backing}" \
    extended_l2=on,encrypt.format=luks,encrypt.iter-time=1 32k "$backing"
done
one "qblock-written luks essiv" \
  encrypt.format=luks,encrypt.iter-time=1,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.hash-alg=sha1 \
  4k base.qcow2

# A wrong password and a missing key.
rm -f w.qcow2
"$QBLOCK" create -q -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=1 \
  w.qcow2 1M
wrong=$("$QBLOCK" io --object secret,id=s,data=wrong --image-opts -c 'read 0 512' "$(E w.qcow2)" 2>&1)
[[ $wrong == *"Invalid password, cannot unlock any keyslot"* ]]
ok_or_fail $((! $?)) "wrong password"
nokey=$("$QBLOCK" io -c 'read 0 512' w.qcow2 2>&1)
[[ $nokey == *"Parameter 'encrypt.key-secret' is required for cipher"* ]]
ok_or_fail $((! $?)) "missing key"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
