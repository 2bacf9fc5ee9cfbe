#!/usr/bin/env bash
# Side-by-side benchmark of the qcow2 L2 cache (issue 12, docs/performance.md "L2 cache"):
# 4 KiB O_DIRECT reads spread over a 64 GiB qcow2 image whose every cluster is mapped
# (`qemu-img create -o preallocation=metadata`: 8 MiB of L2 tables, a sparse file), opened
# with l2-cache-size=1M by both `qblock bench` and `qemu-img bench`, so the cache holds an
# eighth of the tables and almost every request misses it.
#
# The step (-S 61 x 32 MiB + 4 KiB) moves each request 61 L2 slices of 4 KiB (32 MiB of guest
# each) further, modulo the image: every one of the 2048 slices is visited before any comes
# round again, so a 256-entry LRU cache never hits; this is the worst case of random reads.
# The tools alternate, RUNS rounds per depth; prints every run, the medians, min/max and the
# ratio qblock/qemu-img. Information only: fails only if a tool fails or the image is not
# clean afterwards.
#
# Usage: bench/l2_cache.sh      (`make bench-l2-cache` builds the release binary first)
# Environment: RUNS (default 5), COUNT (requests per run, default 100000), DEPTHS (default
#              "1 16"), L2_CACHE (default 1M), QBLOCK (default build/release/bin/qblock),
#              QEMU_IMG (default qemu-img), BENCH_DIR (default /var/tmp; not tmpfs: O_DIRECT),
#              QUICK=1 (COUNT 5000, RUNS 1: a smoke test, not results).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  runs=${RUNS:-1} count=${COUNT:-5000}
else
  runs=${RUNS:-5} count=${COUNT:-100000}
fi
depths=${DEPTHS:-1 16}
l2_cache=${L2_CACHE:-1M}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_img=${QEMU_IMG:-qemu-img}
bench_dir=${BENCH_DIR:-/var/tmp}
size=64G
step=$((61 * 32 * 1024 * 1024 + 4096))

die() { echo "l2_cache.sh: $*" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ $count =~ ^[1-9][0-9]*$ ]] || die "COUNT must be a positive integer, not '$count'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-l2-cache' (or 'make build')"
command -v "$qemu_img" >/dev/null || die "$qemu_img not found"
case $(stat -f -c %T "$bench_dir") in
  tmpfs | ramfs) die "BENCH_DIR $bench_dir is on tmpfs; use a directory on a real disk (O_DIRECT)" ;;
esac

tmp=$(mktemp -d "$bench_dir/qblock-l2cache.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
img=$tmp/mapped.qcow2
"$qemu_img" create -q -f qcow2 -o preallocation=metadata "$img" "$size"
sync
# Every cluster mapped, yet the file holds little more than its metadata.
mapped=$("$qemu_img" map --output=json "$img" |
  python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if "offset" in e))')
[[ $mapped == $(numfmt --from=iec "$size") ]] || die "expected every cluster mapped, got $mapped bytes"

opts="driver=qcow2,l2-cache-size=$l2_cache,file.filename=${img//,/,,}"
run_one() {
  local out secs
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; echo "l2_cache.sh: failed: $*" >&2; exit 1; }
  secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out")
  [[ -n $secs ]] || { printf '%s\n' "$out" >&2; echo "l2_cache.sh: no result: $*" >&2; exit 1; }
  echo "$secs"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { printf '%s\n' "$@" | sort -g | awk 'NR==1 {lo=$1} {hi=$1} END {printf "%.3f-%.3f", lo, hi}'; }

echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(df -T "$tmp" | awk 'NR==2 {print $2 " on " $1}')"
echo "image: $size qcow2, 64 KiB clusters, preallocation=metadata ($(du -h "$img" | cut -f1) on disk), l2-cache-size=$l2_cache"
echo "qblock:   $qblock bench --image-opts -t none -c $count -d D -s 4k -S $step $opts"
echo "qemu-img: $qemu_img bench --image-opts -t none -i io_uring -c $count -d D -s 4k -S $step $opts   ($("$qemu_img" --version | head -1))"
[[ $quick == 1 ]] && echo "QUICK=1: a smoke test, not results"
for d in $depths; do
  common=(--image-opts -t none -c "$count" -d "$d" -s 4k -S "$step")
  qt=() tt=()
  for ((i = 1; i <= runs; i++)); do
    # Alternate which tool goes first.
    if ((i % 2)); then
      q=$(run_one "$qblock" bench "${common[@]}" "$opts")
      t=$(run_one "$qemu_img" bench "${common[@]}" -i io_uring "$opts")
    else
      t=$(run_one "$qemu_img" bench "${common[@]}" -i io_uring "$opts")
      q=$(run_one "$qblock" bench "${common[@]}" "$opts")
    fi
    qt+=("$q") tt+=("$t")
    printf 'depth %-2s run %d: qblock %7.3f s   qemu-img %7.3f s\n' "$d" "$i" "$q" "$t"
  done
  qm=$(median "${qt[@]}") tm=$(median "${tt[@]}")
  printf 'depth %-2s median: qblock %.3f s (%s)   qemu-img %.3f s (%s)   qblock/qemu-img %s\n' \
    "$d" "$qm" "$(minmax "${qt[@]}")" "$tm" "$(minmax "${tt[@]}")" \
    "$(awk -v a="$qm" -v b="$tm" 'BEGIN {printf "%.3f", a / b}')"
done
"$qemu_img" check -q "$img" || { echo "l2_cache.sh: image not clean" >&2; exit 1; }
echo "image clean after all runs (qemu-img check)"
