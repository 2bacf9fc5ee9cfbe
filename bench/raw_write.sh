#!/usr/bin/env bash
# Side-by-side benchmark: `qblock bench` against `qemu-img bench` (7.2) for 4 KiB O_DIRECT
# writes at queue depth 16 on a fallocated raw file (docs/performance.md). Runs the two tools
# alternately, prints each run, the medians and the ratio qblock/qemu, and fails if qblock is
# more than 10% slower. A read variant runs afterwards for information only.
#
# Usage: bench/raw_write.sh [RUNS]      (default 5; `make bench` builds the release binary first)
# Environment: QBLOCK (default build/release/bin/qblock), QEMU_IMG (default qemu-img),
#              BENCH_DIR (parent of the temporary directory, default /var/tmp),
#              BENCH_SIZE (default 1G), BENCH_COUNT (default 200000), BENCH_LIMIT (default 1.1).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_img=${QEMU_IMG:-qemu-img}
size=${BENCH_SIZE:-1G}
count=${BENCH_COUNT:-200000}
limit=${BENCH_LIMIT:-1.1}

if [[ ! -x $qblock ]]; then
  echo "raw_write.sh: $qblock not found; run 'make bench' (or 'make build') first" >&2
  exit 2
fi
command -v "$qemu_img" >/dev/null || { echo "raw_write.sh: $qemu_img not found" >&2; exit 2; }

tmp=$(mktemp -d "${BENCH_DIR:-/var/tmp}/qblock-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
img=$tmp/test.raw

common=(-f raw -t none -c "$count" -d 16 -s 4k)
qblock_cmd=("$qblock" bench "${common[@]}")
qemu_cmd=("$qemu_img" bench "${common[@]}" -i io_uring)

# Prints the seconds of one run ("Run completed in X seconds.").
run_one() {
  local out
  out=$("$@") || { echo "raw_write.sh: failed: $*" >&2; exit 1; }
  sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# Every write run gets a fresh fallocated file, so both tools pay the same unwritten-extent
# conversion and neither benefits from the other's writes.
fresh_image() {
  rm -f "$img"
  fallocate -l "$size" "$img"
  sync
}

echo "machine: $(nproc) cores, kernel $(uname -r), $(df -T "$tmp" | awk 'NR==2 {print $2}') on $(df "$tmp" | awk 'NR==2 {print $1}')"
echo "qblock:   ${qblock_cmd[*]} -w FILE"
echo "qemu-img: ${qemu_cmd[*]} -w FILE   ($("$qemu_img" --version | head -1))"
echo

compare() {  # compare LABEL EXTRA_ARG FRESH(yes/no)
  local label=$1 extra=$2 fresh=$3 q t i
  local -a qtimes=() ttimes=()
  for ((i = 1; i <= runs; i++)); do
    [[ $fresh == yes ]] && fresh_image
    q=$(run_one "${qblock_cmd[@]}" $extra "$img")
    [[ $fresh == yes ]] && fresh_image
    t=$(run_one "${qemu_cmd[@]}" $extra "$img")
    qtimes+=("$q")
    ttimes+=("$t")
    printf '%s run %d: qblock %6.3f s   qemu-img %6.3f s\n' "$label" "$i" "$q" "$t"
  done
  local qm tm ratio
  qm=$(median "${qtimes[@]}")
  tm=$(median "${ttimes[@]}")
  ratio=$(awk -v a="$qm" -v b="$tm" 'BEGIN {printf "%.3f", a / b}')
  printf '%s median: qblock %.3f s   qemu-img %.3f s   ratio qblock/qemu %s\n' \
    "$label" "$qm" "$tm" "$ratio"
  last_ratio=$ratio
}

compare write -w yes
write_ratio=$last_ratio
echo
# Reads of the data the last write run left (reads of unwritten extents would not reach the
# device).
compare "read (info)" "" no
echo

if awk -v r="$write_ratio" -v l="$limit" 'BEGIN {exit !(r <= l)}'; then
  echo "PASS: write ratio $write_ratio <= $limit"
else
  echo "FAIL: write ratio $write_ratio > $limit"
  exit 1
fi
