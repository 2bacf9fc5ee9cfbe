#!/usr/bin/env bash
# Side-by-side qcow2 allocation benchmark (issue 4, docs/performance.md "qcow2 allocation:
# bench/compare.sh (W1–W6)"): workloads W1–W6 on fresh 64 KiB-cluster images with `-t none`,
# each engine through its own bench tool -- qemu-img bench on default qcow2, qemu-img bench
# through QEMU's preallocate filter (block-semantics.md §7), qemu-img bench on a fallocated raw
# file, and qblock bench on qcow2 made by `qblock create`. Prints the median of RUNS runs per
# engine, the ratios, the project's acceptance targets (PASS/FAIL, informational), and checks
# every qcow2 image of each workload's last repetition with `qemu-img check` and
# `qemu-img compare` against the raw engine's image. Exits 1 on a failed run or check.
#
# Usage: bench/compare.sh          (`make bench-compare` builds the release binary first)
# Environment: RUNS (default 3), WORKLOADS (default "W1 W2 W3 W4 W5 W6"; W1X and W4X are W1 and
#              W4 on images created with -o extended_l2=on, issue 15; W1B and W2B are W1
#              and W2 on images with two enabled persistent dirty bitmaps), QUICK=1 (counts / 10,
#              for smoke tests), QBLOCK (default build/release/bin/qblock), QEMU_IMG (default
#              qemu-img), QEMU_AIO (-i for qemu-img, default io_uring like qblock's only
#              back end), BENCH_DIR (parent of the temporary directory, default /var/tmp;
#              tmpfs is refused because the runs need O_DIRECT on a real disk),
#              QBLOCK_BASELINE (another qblock binary, e.g. a build of an earlier commit: it
#              runs as a fifth engine, `baseline`, alternated with the others, and the report
#              adds qblock/baseline, the before/after comparison of a change).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${RUNS:-3}
workloads=${WORKLOADS:-W1 W2 W3 W4 W5 W6}
quick=${QUICK:-0}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_img=${QEMU_IMG:-qemu-img}
qemu_aio=${QEMU_AIO:-io_uring}
bench_dir=${BENCH_DIR:-/var/tmp}
image_size=8G
backing_size=1G
# Write runs use a non-zero pattern (0xa5) so that `qemu-img compare` against a fresh image
# cannot pass by accident: with bench's default pattern 0 the written data reads like
# unallocated space.
pattern=165
engines=(qemu prealloc raw qblock)
qblock_baseline=${QBLOCK_BASELINE:-}
if [[ -n $qblock_baseline ]]; then
  [[ -x $qblock_baseline ]] || { echo "compare.sh: QBLOCK_BASELINE $qblock_baseline is not executable" >&2; exit 2; }
  engines+=(baseline)
fi

die() { echo "compare.sh: $*" >&2; exit 2; }
fail() { echo "compare.sh: FAILED: $*" >&2; exit 1; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-compare' (or 'make build') first"
command -v "$qemu_img" >/dev/null || die "$qemu_img not found"
for w in $workloads; do
  [[ $w =~ ^(W[1-6]|W1X|W4X|W1B|W2B)$ ]] ||
    die "unknown workload '$w' in WORKLOADS (expected W1 ... W6, W1X, W4X, W1B, W2B)"
done
[[ -d $bench_dir ]] || die "BENCH_DIR $bench_dir is not a directory"
case $(stat -f -c %T "$bench_dir") in
  tmpfs | ramfs) die "BENCH_DIR $bench_dir is on $(stat -f -c %T "$bench_dir"); use a directory on a real disk (O_DIRECT)" ;;
esac

# Peak use: W3 with the raw engine's fallocated 8 GiB file next to three 1.25 GiB qcow2 images.
avail_kib=$(df -Pk "$bench_dir" | awk 'NR==2 {print $4}')
((avail_kib >= 13 * 1024 * 1024)) || die "BENCH_DIR $bench_dir has less than 13 GiB free"

tmp=$(mktemp -d "$bench_dir/qblock-compare.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
backing=$tmp/backing.raw

# --- workloads ------------------------------------------------------------------------------

# Sets wl_args (bench options without -f/-t/-i and without the file name), wl_size (virtual
# size of the fresh image), wl_backing (yes/no), wl_write (yes/no), wl_offset (first offset)
# for workload $1, wl_create (extra create options) and wl_bitmaps (enabled persistent dirty
# bitmaps added to every fresh qcow2 image).
workload() {
  local count depth bufsize step="" offset=0
  wl_size=$image_size wl_backing=no wl_write=yes wl_create=() wl_bitmaps=0
  case $1 in
    W1X | W4X) workload "${1%X}"; wl_create=(-o extended_l2=on); return 0 ;;
    W1B | W2B) workload "${1%B}"; wl_bitmaps=2; return 0 ;;
  esac
  case $1 in
    W1) count=50000 depth=16 bufsize=4k step=64k ;;
    W2) count=200000 depth=16 bufsize=4k ;;
    W3) count=20000 depth=64 bufsize=64k offset=1024 ;;
    W4) count=16000 depth=16 bufsize=4k step=64k wl_size=$backing_size wl_backing=yes ;;
    W5) count=200000 depth=16 bufsize=4k wl_write=no ;;
    W6) count=20000 depth=1 bufsize=4k step=64k ;;
  esac
  [[ $quick == 1 ]] && count=$((count / 10))
  wl_offset=$offset
  wl_args=(-c "$count" -d "$depth" -s "$bufsize")
  [[ -n $step ]] && wl_args+=(-S "$step")
  [[ $offset != 0 ]] && wl_args+=(-o "$offset")
  [[ $wl_write == yes ]] && wl_args+=(-w "--pattern=$pattern")
  return 0
}

describe() {
  case $1 in
    W1) echo "4 KiB writes, each into a new cluster" ;;
    W2) echo "sequential 4 KiB writes" ;;
    W3) echo "cluster-misaligned 64 KiB writes" ;;
    W4) echo "W1's pattern over a 1 GiB raw backing file of data (COW)" ;;
    W5) echo "4 KiB reads of an image filled by W2 (fill untimed)" ;;
    W6) echo "W1 at queue depth 1" ;;
    W1X) echo "W1 on extended_l2=on images (2 KiB subclusters)" ;;
    W4X) echo "W4 on extended_l2=on overlays (no COW at all)" ;;
    W1B) echo "W1 with two enabled persistent dirty bitmaps" ;;
    W2B) echo "W2 with two enabled persistent dirty bitmaps" ;;
  esac
}

# --- engines --------------------------------------------------------------------------------

image_path() {  # image_path ENGINE TAG
  if [[ $1 == raw ]]; then echo "$tmp/$2.$1.raw"; else echo "$tmp/$2.$1.qcow2"; fi
}

# Makes a fresh image for ENGINE at PATH: the engine's own create command, or for raw a
# fallocated file of the same size (W4: a copy of the backing file's data, the raw equivalent
# of an overlay over it). Then syncs, so no earlier writeback overlaps the timed run.
fresh_image() {  # fresh_image ENGINE PATH
  local engine=$1 img=$2
  local -a back=()
  [[ $wl_backing == yes ]] && back=(-b "$backing" -F raw)
  rm -f "$img"
  case $engine in
    qemu | prealloc) "$qemu_img" create -q -f qcow2 "${wl_create[@]}" "${back[@]}" "$img" "$wl_size" ;;
    qblock) "$qblock" create -q -f qcow2 "${wl_create[@]}" "${back[@]}" "$img" "$wl_size" ;;
    baseline) "$qblock_baseline" create -q -f qcow2 "${wl_create[@]}" "${back[@]}" "$img" "$wl_size" ;;
    raw)
      if [[ $wl_backing == yes ]]; then
        cp "$backing" "$img"
      else
        fallocate -l "$wl_size" "$img"
      fi
      ;;
  esac || fail "could not create $img for $engine"
  local b tool=$qemu_img
  [[ $engine == qblock ]] && tool=$qblock
  [[ $engine == baseline ]] && tool=$qblock_baseline
  for ((b = 0; b < wl_bitmaps; b++)); do
    [[ $engine == raw ]] && break
    "$tool" bitmap --add "$img" "b$b" || fail "could not add bitmap b$b to $img for $engine"
  done
  sync
}

# Sets cmd to ENGINE's bench command for image PATH with the workload's options.
engine_cmd() {  # engine_cmd ENGINE PATH
  local engine=$1 img=$2
  case $engine in
    qemu) cmd=("$qemu_img" bench -f qcow2 -t none -i "$qemu_aio" "${wl_args[@]}" "$img") ;;
    # -t and -i apply to --image-opts too: they become open flags that the file node below
    # the filter inherits (checked with strace: O_DIRECT open, io_uring submissions, and the
    # filter's FALLOC_FL_ZERO_RANGE of 128 MiB ahead of EOF plus the truncate at close).
    prealloc)
      cmd=("$qemu_img" bench --image-opts -t none -i "$qemu_aio" "${wl_args[@]}"
        "driver=qcow2,file.driver=preallocate,file.file.filename=${img//,/,,}")
      ;;
    raw) cmd=("$qemu_img" bench -f raw -t none -i "$qemu_aio" "${wl_args[@]}" "$img") ;;
    qblock) cmd=("$qblock" bench -f qcow2 -t none "${wl_args[@]}" "$img") ;;
    baseline) cmd=("$qblock_baseline" bench -f qcow2 -t none "${wl_args[@]}" "$img") ;;
  esac
}

# Runs ENGINE's bench on PATH and prints the seconds of its "Run completed in X seconds." line.
run_bench() {  # run_bench ENGINE PATH
  local out secs
  engine_cmd "$1" "$2"
  out=$("${cmd[@]}" 2>&1) || { printf '%s\n' "$out" >&2; fail "$1: ${cmd[*]}"; }
  secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out")
  [[ -n $secs ]] || { printf '%s\n' "$out" >&2; fail "$1: no 'Run completed' line: ${cmd[*]}"; }
  echo "$secs"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# --- checks ---------------------------------------------------------------------------------

# The 4 KiB at OFFSET of raw file PATH must all be the pattern byte (so that comparing against
# this reference is meaningful).
check_pattern() {  # check_pattern PATH OFFSET
  local octal others
  octal=$(printf '\\%03o' "$pattern")
  others=$(dd if="$1" iflag=skip_bytes,count_bytes skip="$2" count=4096 status=none |
    tr -d "$octal" | wc -c)
  [[ $others == 0 ]] || fail "$1: the first request's 4 KiB at offset $2 do not hold pattern $pattern"
}

# Checks the last repetition's images of write workload TAG: each qcow2 image passes
# `qemu-img check` and reads equal to the raw engine's image (the same workload through
# qemu-img bench on raw; for W4 a copy of the backing data overwritten the same way).
verify_workload() {  # verify_workload TAG
  local tag=$1 ref engine img out
  ref=$(image_path raw "$tag")
  check_pattern "$ref" "$wl_offset"
  for engine in "${engines[@]}"; do
    [[ $engine == raw ]] && continue
    img=$(image_path "$engine" "$tag")
    out=$("$qemu_img" check -f qcow2 "$img" 2>&1) ||
      { printf '%s\n' "$out" >&2; fail "$tag $engine: qemu-img check $img"; }
    grep -q '^No errors were found on the image\.$' <<<"$out" ||
      { printf '%s\n' "$out" >&2; fail "$tag $engine: qemu-img check $img is not clean"; }
    # -T none: with the page cache, qemu-img 7.2 reads the fallocated reference's unwritten
    # extents as data (~30 s for 8 GiB here); with O_DIRECT the compare takes about a second
    # and still finds a single differing byte 5 GiB in.
    out=$("$qemu_img" compare -T none -f qcow2 -F raw "$img" "$ref" 2>&1) ||
      { printf '%s\n' "$out" >&2; fail "$tag $engine: qemu-img compare $img $ref"; }
    checked+=("$tag $engine: check clean, identical to raw")
  done
}

# --- runs -----------------------------------------------------------------------------------

declare -A times=()  # "W1:qemu" -> space-separated seconds of every run
declare -A med=()    # "W1:qemu" -> median seconds
checked=()

# Rotates the engine order with the repetition, so no engine always runs first (after the
# other engines' writeback) or last, and reverses it every other repetition, so no engine
# always runs right after the same other one (whose deleted or copied image may still be
# costing the disk: with QBLOCK_BASELINE, qblock would otherwise always follow raw's 1 GiB
# copy in W4 and baseline always follow qblock).
engine_order() {  # engine_order REPETITION
  local i n=${#engines[@]}
  order=()
  if (($1 % 2)); then
    for ((i = 0; i < n; i++)); do order+=("${engines[(i + $1) % n]}"); done
  else
    for ((i = n - 1; i >= 0; i--)); do order+=("${engines[(i + $1) % n]}"); done
  fi
}

# Every timed run writes a fresh image at one path, and the image is deleted after the run, so
# each engine starts from the same free space: where ext4 places a new file on the disk (and so
# how far its writes are from the backing file's reads under the disk's elevator) is then not a
# property of the engine's slot. The last repetition keeps each image (renamed, its blocks stay
# where they are) for verify_workload.
run_write_workload() {  # run_write_workload TAG
  local tag=$1 i engine img t line
  img=$tmp/$tag.timed
  for ((i = 1; i <= runs; i++)); do
    engine_order "$i"
    line=""
    for engine in "${order[@]}"; do
      fresh_image "$engine" "$img"
      t=$(run_bench "$engine" "$img")
      times[$tag:$engine]+="$t "
      line+=$(printf '  %s %7.3f s' "$engine" "$t")
      if ((i == runs)); then mv "$img" "$(image_path "$engine" "$tag")"; else rm -f "$img"; fi
    done
    echo "$tag run $i:$line"
  done
  verify_workload "$tag"
  for engine in "${engines[@]}"; do rm -f "$(image_path "$engine" "$tag")"; done
}

# W5: each engine fills its own fresh image with one (untimed) W2 run, then every read run
# reads that image; reads do not change it, so the runs share it.
run_read_workload() {
  local tag=W5 i engine img t line
  workload W2
  for engine in "${engines[@]}"; do
    img=$(image_path "$engine" "$tag")
    fresh_image "$engine" "$img"
    t=$(run_bench "$engine" "$img")
    echo "$tag fill ($engine, W2 write, untimed for W5): $t s"
  done
  workload W5
  for ((i = 1; i <= runs; i++)); do
    engine_order "$i"
    line=""
    for engine in "${order[@]}"; do
      t=$(run_bench "$engine" "$(image_path "$engine" "$tag")")
      times[$tag:$engine]+="$t "
      line+=$(printf '  %s %7.3f s' "$engine" "$t")
    done
    echo "$tag run $i:$line"
  done
  for engine in "${engines[@]}"; do rm -f "$(image_path "$engine" "$tag")"; done
}

make_backing() {
  # Pseudo-random data (AES-CTR keystream; /dev/urandom is much slower), so that a COW that
  # copied the wrong cluster or left zeros would fail the compare.
  if command -v openssl >/dev/null; then
    (openssl enc -aes-128-ctr -pass pass:qblock -nosalt -pbkdf2 </dev/zero 2>/dev/null || true) |
      head -c "$backing_size" >"$backing"
  else
    head -c "$backing_size" /dev/urandom >"$backing"
  fi
  [[ $(stat -c %s "$backing") == $(numfmt --from=iec "$backing_size") ]] ||
    fail "could not write the $backing_size backing file"
  sync
}

fs=$(df -T "$tmp" | awk 'NR==2 {print $2 " on " $1}')
echo "machine: $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $fs ($tmp)"
echo "qemu-img: $("$qemu_img" --version | head -1); qblock: $qblock${qblock_baseline:+; baseline: $qblock_baseline}"
echo "runs: $runs per engine and workload, median reported$([[ $quick == 1 ]] && echo "; QUICK=1: counts / 10 (smoke test, not results)")"
echo "engines (fresh image before every write run; IMG is the workload's image):"
wl_args=(WORKLOAD-OPTIONS)
for engine in "${engines[@]}"; do
  engine_cmd "$engine" IMG
  case $engine in
    qemu) create="$qemu_img create -f qcow2 IMG SIZE" ;;
    prealloc) create="$qemu_img create -f qcow2 IMG SIZE" ;;
    raw) create="fallocate -l SIZE IMG  (W4: cp BACKING IMG)" ;;
    qblock) create="$qblock create -f qcow2 IMG SIZE" ;;
    baseline) create="$qblock_baseline create -f qcow2 IMG SIZE" ;;
  esac
  printf '  %-8s %s\n  %-8s %s\n' "$engine" "$create" "" "${cmd[*]}"
done
echo "  (W4 overlays: create ... -b BACKING -F raw; BACKING is $backing_size of pseudo-random data)"
echo "workloads:"
for w in $workloads; do
  workload "$w"
  printf '  %s  %-52s %s, %s image\n' "$w" "$(describe "$w")" "${wl_args[*]}" "$wl_size"
done
echo

for w in $workloads; do
  if [[ $w == W4* && ! -e $backing ]]; then make_backing; fi
  workload "$w"
  if [[ $w == W5 ]]; then run_read_workload; else run_write_workload "$w"; fi
  for engine in "${engines[@]}"; do
    # shellcheck disable=SC2086  # the list is space-separated on purpose
    med[$w:$engine]=$(median ${times[$w:$engine]})
  done
done

# --- report ---------------------------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.3f", a / b; else print "n/a"}'; }

echo
echo "correctness (last repetition of each write workload):"
if ((${#checked[@]} == 0)); then echo "  (no write workload run)"; fi
for c in "${checked[@]}"; do echo "  $c"; done
echo
echo "median seconds over $runs run(s)$([[ $quick == 1 ]] && echo " -- QUICK=1 smoke run, not results"):"
printf '%-8s %10s %10s %10s %10s   %13s %13s %13s\n' workload qemu prealloc raw qblock \
  qblock/qemu qblock/prealloc qblock/raw
for w in $workloads; do
  printf '%-8s %10.3f %10.3f %10.3f %10.3f   %13s %13s %13s\n' "$w" \
    "${med[$w:qemu]}" "${med[$w:prealloc]}" "${med[$w:raw]}" "${med[$w:qblock]}" \
    "$(ratio "${med[$w:qblock]}" "${med[$w:qemu]}")" \
    "$(ratio "${med[$w:qblock]}" "${med[$w:prealloc]}")" \
    "$(ratio "${med[$w:qblock]}" "${med[$w:raw]}")"
done
if [[ -n $qblock_baseline ]]; then
  echo
  echo "before/after (median seconds; qblock/baseline above 1.03 means more than 3% slower):"
  printf '%-8s %10s %10s   %15s\n' workload baseline qblock qblock/baseline
  for w in $workloads; do
    printf '%-8s %10.3f %10.3f   %15s\n' "$w" "${med[$w:baseline]}" "${med[$w:qblock]}" \
      "$(ratio "${med[$w:qblock]}" "${med[$w:baseline]}")"
  done
fi

# Acceptance targets (issue 4). Performance FAILs are reported, not fatal: the exit status is
# reserved for failed runs and failed image checks.
echo
echo "acceptance targets$([[ $quick == 1 ]] && echo " (QUICK=1: indicative only)"):"
target() {  # target WORKLOAD TEXT QBLOCK_SECONDS LIMIT_SECONDS LIMIT_TEXT
  local verdict=FAIL op='>'
  if awk -v q="$3" -v l="$4" 'BEGIN {exit !(q <= l)}'; then verdict=PASS op='<='; fi
  printf '  %s %-4s %-34s qblock %.3f s %-2s %.3f s (%s)\n' "$verdict" "$1" "$2" "$3" "$op" "$4" "$5"
}
limit() { awk -v t="$1" -v f="$2" 'BEGIN {printf "%.6f", t * f}'; }
for w in $workloads; do
  q=${med[$w:qblock]} qe=${med[$w:qemu]} pr=${med[$w:prealloc]} rw=${med[$w:raw]}
  case $w in
    W1)
      target W1 ">= 5x faster than qemu default" "$q" "$(limit "$qe" 0.2)" "qemu $qe s / 5"
      target W1 "<= qemu with preallocate filter" "$q" "$pr" "prealloc"
      target W1 "within 1.2x of raw" "$q" "$(limit "$rw" 1.2)" "raw $rw s x 1.2"
      ;;
    W2 | W3 | W4 | W6)
      target "$w" "<= qemu with preallocate filter" "$q" "$pr" "prealloc"
      ;;
    W4X)
      target W4X "<= qemu on the same extended_l2 image" "$q" "$qe" "qemu extended_l2 $qe s"
      if [[ -n ${med[W4:qemu]:-} ]]; then
        target W4X ">= 4x faster than qemu default (W4)" "$q" "$(limit "${med[W4:qemu]}" 0.25)" \
          "W4 qemu ${med[W4:qemu]} s / 4"
      fi
      ;;
    W1X)
      if [[ -n ${med[W1:qblock]:-} ]]; then
        target W1X "no slower than W1" "$q" "${med[W1:qblock]}" "W1 qblock ${med[W1:qblock]} s"
      fi
      ;;
    W1B | W2B)
      if [[ -n ${med[${w%B}:qblock]:-} ]]; then
        target "$w" "at most 3% slower than ${w%B}" "$q" "$(limit "${med[${w%B}:qblock]}" 1.03)" \
          "${w%B} qblock ${med[${w%B}:qblock]} s x 1.03"
      fi
      ;;
    W5)
      target W5 "speed >= 0.95x qemu default" "$q" "$(limit "$qe" "$(awk 'BEGIN {print 1 / 0.95}')")" \
        "qemu $qe s / 0.95"
      ;;
  esac
done
