#!/usr/bin/env bash
# Interoperability check for the qcow2 driver: a seeded random sequence of writes,
# write-zeroes, discards and flushes is applied by `qblock io` to a qcow2 image; `qemu-img check`
# must find it clean, and `qemu-img compare` equal to a qcow2 image given the same sequence by
# qemu-io and (without discards) to a raw reference written by qemu-io.
#
# Usage: qcow2_random.sh SEED OPS CLUSTER_SIZE COMPAT REFCOUNT_BITS BACKING(none|qcow2|raw)
# Environment: QBLOCK (path of the qblock binary); SNAPSHOT=1: QEMU first fills half the
# image and takes an internal snapshot, so the sequence writes over shared clusters (§3.6
# COW); at the end both images are reverted and must read as they did at the snapshot.
# EXTENDED_L2=1: the images have extended L2 entries (qcow2-format.md §7); then the other
# direction is checked too: qblock checks QEMU's image and compares it with its own.
set -euo pipefail
seed=$1 ops=$2 cluster=$3 compat=$4 refbits=$5 backing=$6
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
size=$((16 * 1024 * 1024))
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-interop.XXXXXX")
trap '[[ -n ${KEEP:-} ]] || rm -rf "$dir"' EXIT
img=$dir/test.qcow2 ref=$dir/ref.raw

opts="cluster_size=$cluster,compat=$compat,refcount_bits=$refbits"
[[ -n ${EXTENDED_L2:-} ]] && opts+=",extended_l2=on"
if [[ $backing != none ]]; then
  # The backing file holds a pattern everywhere; the reference starts as its copy.
  base=$dir/base.$backing
  qemu-img create -q -f "$backing" "$base" $size
  qemu-io -f "$backing" -c "write -P 0x5b 0 $size" -c flush "$base" >/dev/null
  qemu-img create -q -f qcow2 -o "$opts" -b "$base" -F "$backing" "$img"
  # The reference is made without block status: a plain byte copy of what the base reads as.
  qemu-io -f "$backing" -r -c "read -v 0 $size" "$base" >/dev/null  # (base must be readable)
  if [[ $backing == raw ]]; then
    cp --sparse=never "$base" "$ref"
  else
    qemu-img convert -O raw "$base" "$ref"
  fi
  sync "$base" "$ref"
else
  qemu-img create -q -f qcow2 -o "$opts" "$img" $size
  truncate -s $size "$ref"
fi

if [[ -n ${SNAPSHOT:-} ]]; then
  prefill=(-c "write -P 0x3c 0 $((size / 2))" -c "write -z $((size / 8)) $((size / 16))")
  qemu-io -f qcow2 "${prefill[@]}" "$img" >/dev/null
  qemu-io -f raw "${prefill[@]}" "$ref" >/dev/null
  qemu-img snapshot -c before "$img"
  cp "$img" "$dir/qemu.qcow2"
  cp "$img" "$dir/at-snapshot.qcow2"
fi

RANDOM=$seed
cmds=()
for ((i = 0; i < ops; i++)); do
  # Offsets and lengths in 512-byte units, biased towards cluster boundaries and small sizes.
  off=$(( (RANDOM * 32768 + RANDOM) % (size / 512) * 512 ))
  len=$(( (RANDOM % 256 + 1) * 512 ))
  (( off + len > size )) && len=$(( size - off ))
  pat=$(( RANDOM % 255 + 1 ))
  case $(( RANDOM % 10 )) in
    0|1|2|3|4) cmds+=("write -P $pat $off $len") ;;
    5) cmds+=("write -z $off $len") ;;
    6) cmds+=("write -z -u $off $len") ;;
    7) cmds+=("discard $off $len") ;;
    8) cmds+=("flush") ;;
    9) cmds+=("writev -P $pat $off $len") ;;
  esac
done

run_all() {  # run_all FORMAT IMAGE: feed the commands through qblock io's stdin
  local rc=0
  printf '%s\n' "${cmds[@]}" | "$QBLOCK" io -f "$1" "$2" >"$dir/out.$1" 2>&1 || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "qblock io exited with status $rc:"
    grep -v -e '^wrote\|^read\|^discard\|ops/sec' "$dir/out.$1" | tail -20
    exit 1
  fi
}
run_all qcow2 "$img"
if grep -q "failed" "$dir/out.qcow2"; then
  echo "qblock io reported failures:"; grep failed "$dir/out.qcow2" | head; exit 1
fi
# Write everything back first: qemu-img compare trusts SEEK_DATA/SEEK_HOLE, which have been
# seen to misreport freshly written unwritten extents under load (docs/architecture.md).
sync "$img"
qemu-img check -q "$img"
# The same sequence through QEMU must give the same guest-visible content (discard included:
# qcow2 defines what a discarded cluster reads as).
if [[ -n ${SNAPSHOT:-} ]]; then
  :  # qemu.qcow2 was copied at the snapshot
elif [[ $backing != none ]]; then
  qemu-img create -q -f qcow2 -o "$opts" -b "$base" -F "$backing" "$dir/qemu.qcow2"
else
  qemu-img create -q -f qcow2 -o "$opts" "$dir/qemu.qcow2" $size
fi
printf '%s\n' "${cmds[@]}" | qemu-io -f qcow2 "$dir/qemu.qcow2" >/dev/null 2>&1
sync "$dir/qemu.qcow2"
qemu-img compare "$img" "$dir/qemu.qcow2" >"$dir/cmp" || { echo "vs QEMU's image:"; cat "$dir/cmp"; exit 1; }
if [[ -n ${EXTENDED_L2:-} ]]; then
  # QEMU's subclusters as qblock reads them.
  "$QBLOCK" check -q "$dir/qemu.qcow2" || { echo "qblock check of QEMU's image failed"; exit 1; }
  "$QBLOCK" compare "$dir/qemu.qcow2" "$img" >"$dir/cmp" || { echo "qblock: vs QEMU's image:"; cat "$dir/cmp"; exit 1; }
fi
# Without discards, a raw file written by the same sequence is the reference too.
# (A loop, not `printf | grep -q`: with pipefail, grep's early exit makes printf die of
# SIGPIPE on long lists, and the test would compare against a wrong reference.)
has_discard=false
for c in "${cmds[@]}"; do [[ $c == discard* ]] && has_discard=true; done
if [[ $has_discard == false ]]; then
  # The raw reference is written by QEMU, so it is independent of the engine under test.
  printf '%s\n' "${cmds[@]}" | qemu-io -f raw "$ref" >"$dir/out.ref" 2>&1
  sync "$ref"
  qemu-img compare -f qcow2 -F raw "$img" "$ref" >"$dir/cmp" || { echo "vs the raw reference:"; cat "$dir/cmp"; exit 1; }
fi
if [[ -n ${SNAPSHOT:-} ]]; then
  # Reverting must bring back exactly what the snapshot held: qblock left the shared
  # clusters alone and kept the refcounts right.
  qemu-img snapshot -a before "$img"
  qemu-img check -q "$img"
  qemu-img compare "$img" "$dir/at-snapshot.qcow2" >"$dir/cmp" || { echo "after revert:"; cat "$dir/cmp"; exit 1; }
fi
echo "ok ${SNAPSHOT:+snapshot }${EXTENDED_L2:+extended_l2 }seed=$seed ops=$ops cluster=$cluster compat=$compat refcount_bits=$refbits backing=$backing"
