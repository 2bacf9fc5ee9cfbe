#!/usr/bin/env bash
# qblock commit and rebase against qemu-img 7.2 on the same chains: random writes, write-zeroes
# and discards (qemu-io) into a chain of three images (base, mid, top; cluster sizes 4k/64k,
# a raw base, a v2 top, layers of different lengths), copied twice; one copy is committed or
# rebased by qblock, the other by qemu-img. Every image must check clean, and each image of
# qblock's chain must read (through its chain) as the same image of qemu-img's does.
# Usage: commit_rebase.sh [OPS]     Environment: QBLOCK (the qblock binary).
set -euo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
ops=${1:-200}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-commit-rebase.XXXXXX")
trap 'rm -rf "$dir"' EXIT
failed=0 seed=11

# Random qemu-io commands over [0, size) for `ops` operations.
random_ops() {
  local size=$1 n=$2 i off len pat
  for ((i = 0; i < n; i++)); do
    off=$(( (RANDOM * 32768 + RANDOM) % (size / 512) * 512 ))
    len=$(( (RANDOM % 256 + 1) * 512 ))
    (( off + len > size )) && len=$((size - off))
    pat=$((RANDOM % 255 + 1))
    case $((RANDOM % 6)) in
      0|1|2) echo "write -P $pat $off $len" ;;
      3) echo "write -z $off $len" ;;
      4) echo "discard $off $len" ;;
      5) echo "flush" ;;
    esac
  done
}

# make_chain DIR CLUSTER BASEFMT TOPCOMPAT: base (8M), mid (8M), top (12M).
make_chain() {
  local d=$1 cluster=$2 basefmt=$3 compat=$4
  mkdir -p "$d"
  if [[ $basefmt == raw ]]; then
    qemu-img create -q -f raw "$d/base.img" 8M
  else
    qemu-img create -q -f qcow2 -o cluster_size=$cluster "$d/base.img" 8M
  fi
  random_ops 8388608 "$ops" | qemu-io -f "$basefmt" "$d/base.img" >/dev/null
  qemu-img create -q -f qcow2 -o cluster_size=$cluster -b base.img -F "$basefmt" "$d/mid.qcow2"
  random_ops 8388608 "$ops" | qemu-io "$d/mid.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -o cluster_size=$cluster,compat=$compat -b mid.qcow2 -F qcow2 \
    "$d/top.qcow2" 12M
  random_ops 12582912 "$ops" | qemu-io "$d/top.qcow2" >/dev/null
  qemu-img create -q -f qcow2 -o cluster_size=$cluster "$d/other.qcow2" 10M
  random_ops 10485760 "$ops" | qemu-io "$d/other.qcow2" >/dev/null
}

# judge A B: every qcow2 image checks clean; each image reads the same in both chains.
judge() {
  local a=$1 b=$2 f verdict=ok
  for f in "$a"/*.qcow2; do
    qemu-img check -q "$f" || { verdict="check failed: $(basename "$f")"; break; }
  done
  if [[ $verdict == ok ]]; then
    for f in "$a"/*; do
      qemu-img compare -q "$f" "$b/$(basename "$f")" ||
        { verdict="differs from qemu-img's: $(basename "$f")"; break; }
    done
  fi
  echo "$verdict"
}

cases=(
  "commit"
  "commit -d"
  "commit -b base.img"
  "rebase -b base.img -F BASEFMT"
  "rebase -b other.qcow2 -F qcow2"
  "rebase -b "
  "rebase -u -b base.img -F BASEFMT"
)
for cluster in 4096 65536; do
  for basefmt in qcow2 raw; do
    for compat in 1.1 0.10; do
      for c in "${cases[@]}"; do
        seed=$((seed + 1))
        RANDOM=$seed
        rm -rf "$dir/q" "$dir/r"
        make_chain "$dir/q" "$cluster" "$basefmt" "$compat"
        cp -r "$dir/q" "$dir/r"
        read -r -a words <<<"${c//BASEFMT/$basefmt}"
        [[ $c == "rebase -b " ]] && words=(rebase -b "")
        qout=$(cd "$dir/q" && "$QBLOCK" "${words[@]}" top.qcow2 2>&1) || qout="exit $?: $qout"
        rout=$(cd "$dir/r" && qemu-img "${words[@]}" top.qcow2 2>&1) || rout="exit $?: $rout"
        verdict=$(judge "$dir/q" "$dir/r")
        [[ "$qout" == "$rout" ]] || verdict="output differs: '$qout' vs '$rout'"
        echo "$verdict: ${words[*]} cluster=$cluster base=$basefmt compat=$compat ops=$ops"
        [[ $verdict == ok ]] || failed=$((failed + 1))
      done
    done
  done
done
[[ $failed -eq 0 ]]
