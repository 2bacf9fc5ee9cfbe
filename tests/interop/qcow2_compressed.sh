#!/usr/bin/env bash
# Compressed writes (qemu-io `write -c`) by qblock, interleaved with ordinary writes,
# write-zeroes and discards: for zlib and zstd, cluster sizes 512/4k/64k/2M and refcount
# widths 1/16, the image must check clean, equal the image qemu-io makes from the same
# commands, and equal a raw reference where the compressed writes are plain writes.
# Compressed writes go only to clusters nothing touched before (QEMU refuses the others).
# Usage: qcow2_compressed.sh [OPS]     Environment: QBLOCK (the qblock binary).
set -euo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
ops=${1:-400}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-compressed.XXXXXX")
trap 'rm -rf "$dir"' EXIT
failed=0 seed=7
for ctype in zlib zstd; do
  for cluster in 512 4096 65536 2097152; do
    for refbits in 1 16; do
      seed=$((seed + 1))
      RANDOM=$seed
      size=$(( cluster * 32 > 8388608 ? cluster * 32 : 8388608 ))
      opts="cluster_size=$cluster,refcount_bits=$refbits,compression_type=$ctype"
      qemu-img create -q -f qcow2 -o "$opts" "$dir/qblock.qcow2" $size
      cp "$dir/qblock.qcow2" "$dir/qemu.qcow2"
      rm -f "$dir/ref.raw"; truncate -s $size "$dir/ref.raw"
      declare -A touched=()
      cmds=() refcmds=()
      nclusters=$((size / cluster))
      for ((i = 0; i < ops; i++)); do
        pat=$((RANDOM % 255 + 1))
        c=$(( (RANDOM * 32768 + RANDOM) % nclusters ))
        if (( RANDOM % 2 == 0 )) && [[ -z ${touched[$c]:-} ]]; then
          n=1
          while (( n < 4 && c + n < nclusters )) && [[ -z ${touched[$((c + n))]:-} ]]; do n=$((n + 1)); done
          for ((k = 0; k < n; k++)); do touched[$((c + k))]=1; done
          cmds+=("write -c -P $pat $((c * cluster)) $((n * cluster))")
          refcmds+=("write -P $pat $((c * cluster)) $((n * cluster))")
          continue
        fi
        off=$(( (RANDOM * 32768 + RANDOM) % (size / 512) * 512 ))
        len=$(( (RANDOM % 64 + 1) * 512 ))
        (( off + len > size )) && len=$((size - off))
        for ((k = off / cluster; k <= (off + len - 1) / cluster; k++)); do touched[$k]=1; done
        case $((RANDOM % 4)) in
          0|1) cmd="write -P $pat $off $len" ;;
          2) cmd="write -z $off $len" ;;
          3) cmd="flush" ;;
        esac
        cmds+=("$cmd") refcmds+=("$cmd")
      done
      unset touched
      out=$(printf '%s\n' "${cmds[@]}" | "$QBLOCK" io "$dir/qblock.qcow2" 2>&1)
      # QEMU 7.2 itself fails some of these sequences (zstd with 512-byte clusters: "Preventing
      # invalid write on metadata (overlaps with active L2 table)"); then only the raw
      # reference judges.
      qemu_ok=true
      printf '%s\n' "${cmds[@]}" | qemu-io "$dir/qemu.qcow2" >"$dir/qemu.out" 2>&1 || qemu_ok=false
      grep -q "failed" "$dir/qemu.out" && qemu_ok=false
      printf '%s\n' "${refcmds[@]}" | qemu-io -f raw "$dir/ref.raw" >/dev/null 2>&1
      verdict=ok
      if grep -q "failed" <<<"$out"; then verdict="qblock io reported: $(grep -m1 failed <<<"$out")"
      elif ! qemu-img check -q "$dir/qblock.qcow2"; then verdict="qemu-img check failed"
      elif $qemu_ok && ! qemu-img compare -q "$dir/qblock.qcow2" "$dir/qemu.qcow2"; then verdict="differs from QEMU's image"
      elif ! qemu-img compare -q -F raw "$dir/qblock.qcow2" "$dir/ref.raw"; then verdict="differs from the raw reference"
      fi
      compressed=$(qemu-img check --output=json "$dir/qblock.qcow2" | sed -n 's/.*"compressed-clusters": \([0-9]*\).*/\1/p')
      note=""
      $qemu_ok || note=" (QEMU failed this sequence)"
      echo "$verdict: $ctype cluster=$cluster refcount_bits=$refbits ops=$ops compressed_clusters=${compressed:-0}$note"
      [[ $verdict == ok ]] || failed=$((failed + 1))
    done
  done
done
[[ $failed -eq 0 ]]
