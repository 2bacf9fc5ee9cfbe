#!/usr/bin/env bash
# Side-by-side benchmark of reads and writes of *allocated* qcow2 clusters: `qblock bench`
# against `qemu-img bench` (7.2) on the same fully allocated image (64 KiB clusters, 1 GiB,
# every cluster written once beforehand), 4 KiB O_DIRECT requests at queue depth 16, random
# offsets spread over the image (-S 64k). The tools run alternately; prints each run, the
# medians and the ratio qblock/qemu-img (docs/performance.md, issue 3). Information only:
# the script fails only if a tool fails or the image is not clean afterwards.
#
# Usage: bench/qcow2_allocated.sh [RUNS]    (default 5)
# Environment: QBLOCK (default build/release/bin/qblock), BENCH_DIR (default /var/tmp),
#              BENCH_COUNT (default 200000).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
count=${BENCH_COUNT:-200000}
[[ -x $qblock ]] || { echo "qcow2_allocated.sh: $qblock not found; run 'make build'" >&2; exit 2; }
tmp=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qblock-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
img=$tmp/full.qcow2
qemu-img create -q -f qcow2 "$img" 1G
# Allocate every cluster (sequential 64 KiB writes), then make the data stable.
qemu-img bench -q -w -t none -c 16384 -d 16 -s 64k -S 64k "$img" >/dev/null
sync
common=(-f qcow2 -t none -c "$count" -d 16 -s 4k -S 64k)
run_one() {
  local out
  out=$("$@") || { echo "qcow2_allocated.sh: failed: $*" >&2; exit 1; }
  sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "machine: $(nproc) cores, kernel $(uname -r), $(df -T "$tmp" | awk 'NR==2 {print $2}')"
echo "qblock:   $qblock bench ${common[*]} [-w] IMG"
echo "qemu-img: qemu-img bench ${common[*]} -i io_uring [-w] IMG   ($(qemu-img --version | head -1))"
for mode in read write; do
  extra=()
  [[ $mode == write ]] && extra=(-w)
  qt=() tt=()
  for ((i = 1; i <= runs; i++)); do
    q=$(run_one "$qblock" bench "${common[@]}" "${extra[@]}" "$img")
    t=$(run_one qemu-img bench "${common[@]}" -i io_uring "${extra[@]}" "$img")
    qt+=("$q") tt+=("$t")
    printf '%s run %d: qblock %6.3f s   qemu-img %6.3f s\n' "$mode" "$i" "$q" "$t"
  done
  qm=$(median "${qt[@]}") tm=$(median "${tt[@]}")
  printf '%s median: qblock %.3f s   qemu-img %.3f s   ratio qblock/qemu-img %s\n' "$mode" \
    "$qm" "$tm" "$(awk -v a="$qm" -v b="$tm" 'BEGIN {printf "%.3f", a / b}')"
done
qemu-img check -q "$img"
echo "image clean after all runs (qemu-img check)"
