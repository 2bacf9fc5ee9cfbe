#!/usr/bin/env bash
# Side-by-side benchmark of the image lifecycle verbs (issue 14, docs/performance.md
# "commit and snapshot -c"), qblock against qemu-img 7.2, each at least as fast:
#  (a) `commit` of a 1 GiB overlay: a 4 GiB base.qcow2 holding 1 GiB of data (its first GiB),
#      and an overlay holding 1 GiB of other data, written in 1 MiB pieces at every other MiB of
#      the first 2 GiB (half of it over the base's data, half over its holes);
#  (b) `snapshot -c` of a 64 GiB image with 8 GiB allocated (preallocation=metadata over its
#      first 8 GiB: 131,072 clusters whose refcounts the snapshot increments).
# Both inputs are made once by qemu-img/qemu-io (untimed) and copied fresh before every run;
# the tools alternate (which goes first swaps every run), RUNS rounds each, medians reported.
# Every tool's first result is judged: qemu-img check, and for commit qemu-img compare of the
# base against the overlay's content before the commit; for snapshot -c the snapshot table.
#
# Usage: bench/lifecycle.sh     (`make bench-lifecycle` builds the release binary first)
# Environment: RUNS (default 5), QBLOCK (default build/release/bin/qblock), QEMU_IMG and QEMU_IO
#              (default qemu-img, qemu-io), BENCH_DIR (default /var/tmp), QUICK=1 (sizes / 16,
#              RUNS 1: a smoke test, not results).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/bench/stats.sh"
quick=${QUICK:-0}
runs=${RUNS:-5}
[[ $quick == 1 ]] && runs=${RUNS:-1}
scale=1
[[ $quick == 1 ]] && scale=16
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_img=${QEMU_IMG:-qemu-img}
qemu_io=${QEMU_IO:-qemu-io}
bench_dir=${BENCH_DIR:-/var/tmp}

die() { echo "lifecycle.sh: $*" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-lifecycle' (or 'make build')"
command -v "$qemu_img" >/dev/null || die "$qemu_img not found"
command -v "$qemu_io" >/dev/null || die "$qemu_io not found"

tmp=$(mktemp -d "$bench_dir/qblock-lifecycle.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mib=$((1024 / scale))  # 1 GiB expressed in MiB, scaled

# The commit input: base.qcow2 and overlay.qcow2 in $tmp/commit-in, and the expected content.
mkdir "$tmp/commit-in"
"$qemu_img" create -q -f qcow2 "$tmp/commit-in/base.qcow2" $((4 * mib))M
"$qemu_io" -f qcow2 -c "write -P 0x11 0 ${mib}M" "$tmp/commit-in/base.qcow2" >/dev/null
"$qemu_img" create -q -f qcow2 -b base.qcow2 -F qcow2 "$tmp/commit-in/overlay.qcow2" $((4 * mib))M
script=()
for ((m = 0; m < 2 * mib; m += 2)); do script+=(-c "write -P $((m % 250 + 1)) ${m}M 1M"); done
"$qemu_io" -f qcow2 "${script[@]}" "$tmp/commit-in/overlay.qcow2" >/dev/null
"$qemu_img" convert -O raw "$tmp/commit-in/overlay.qcow2" "$tmp/commit-expected.raw"

# The snapshot input: 64 GiB virtual, the first 8 GiB allocated.
"$qemu_img" create -q -f qcow2 -o preallocation=metadata "$tmp/snap-in.qcow2" $((8 * mib))M
"$qemu_img" resize -q "$tmp/snap-in.qcow2" $((64 * mib))M

commit_run() {  # TOOL DIR: a fresh copy of the commit input in DIR, committed by TOOL
  rm -rf "$2" && cp -r --sparse=always "$tmp/commit-in" "$2"
  sync
  timed "$1" commit -q "$2/overlay.qcow2"
}
commit_judge() {  # DIR
  "$qemu_img" check -q "$1/base.qcow2" || die "$1/base.qcow2: qemu-img check failed"
  "$qemu_img" compare -q -f raw -F qcow2 "$tmp/commit-expected.raw" "$1/base.qcow2" ||
    die "$1/base.qcow2 differs from the overlay's content"
}
snapshot_run() {  # TOOL IMAGE
  rm -f "$2" && cp --sparse=always "$tmp/snap-in.qcow2" "$2"
  sync
  timed "$1" snapshot -c s1 "$2"
}
snapshot_judge() {  # IMAGE
  "$qemu_img" check -q "$1" || die "$1: qemu-img check failed"
  "$qemu_img" snapshot -l "$1" | grep -q ' s1 ' || die "$1: snapshot s1 missing"
}

# bench NAME RUN JUDGE SUFFIX: RUNS alternating rounds of RUN for both tools, medians.
bench() {
  local name=$1 run=$2 judge=$3 sfx=$4 i q t qt=() tt=()
  for ((i = 1; i <= runs; i++)); do
    if ((i % 2)); then
      q=$($run "$qblock" "$tmp/qb$sfx") t=$($run "$qemu_img" "$tmp/qe$sfx")
    else
      t=$($run "$qemu_img" "$tmp/qe$sfx") q=$($run "$qblock" "$tmp/qb$sfx")
    fi
    if ((i == 1)); then $judge "$tmp/qb$sfx" && $judge "$tmp/qe$sfx"; fi
    rm -rf "$tmp/qb$sfx" "$tmp/qe$sfx"
    qt+=("$q") tt+=("$t")
    printf '%s run %d: qblock %7.3f s   qemu-img %7.3f s\n' "$name" "$i" "$q" "$t"
  done
  local qm tm
  qm=$(median "${qt[@]}") tm=$(median "${tt[@]}")
  printf '%s median: qblock %.3f s (%s)   qemu-img %.3f s (%s)   speedup qemu-img/qblock %s\n' \
    "$name" "$qm" "$(minmax "${qt[@]}")" "$tm" "$(minmax "${tt[@]}")" "$(ratio "$qm" "$tm")"
}

echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(df -T "$tmp" | awk 'NR==2 {print $2 " on " $1}')"
echo "qblock: $qblock    qemu-img: $("$qemu_img" --version | head -1)"
[[ $quick == 1 ]] && echo "QUICK=1: a smoke test, not results"
bench "commit ${mib}M overlay" commit_run commit_judge .commit
bench "snapshot -c, $((8 * mib))M allocated" snapshot_run snapshot_judge .qcow2
