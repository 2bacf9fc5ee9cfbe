#!/usr/bin/env bash
# Side-by-side NBD server benchmark: `qblock nbd` against `qemu-nbd` (QEMU 7.2), measured with
# fio's nbd engine (libnbd) over a Unix socket. Engines:
#   qblock  qblock nbd with its defaults on a qcow2 image
#   qemu    qemu-nbd --cache=none --aio=io_uring on a qcow2 image
#   raw     qemu-nbd --cache=none --aio=io_uring on a fallocated raw file (the ceiling; reset
#           with `fallocate --zero-range` instead of recreated, see fresh_image)
# Every qcow2 image is 8 GiB with 64 KiB clusters, made by `qemu-img create` for both qcow2
# engines. Workloads, each at every queue depth of DEPTHS (default 1 16 64):
#   randwrite  4 KiB random writes over the whole 8 GiB, fresh image before every run
#   randread   4 KiB random reads within the first READ_SIZE (default 1 GiB) of an image that one
#              untimed sequential 1 MiB write pass (fio rw=write bs=1m iodepth=8) through the
#              same engine's server filled first; the runs of every depth share that image
#   seqwrite   64 KiB sequential writes from offset 0, fresh image before every run
# Each fio job is time-based (RUNTIME seconds, no ramp, no flush: the server's SIGTERM flush is
# not timed but its duration is shown in each run's line as "stop"). Every run starts its own
# server (--fork, -t), and after it the script stops the server with SIGTERM, waits for it to
# exit and runs `qemu-img check` on qcow2 images: a failed run or check stops the script with
# exit status 1. Prints each run, then the median IOPS and MiB/s of RUNS runs per engine and
# the ratios qblock/qemu and qblock/raw, and writes the same table with the setup and the exact
# commands as Markdown to OUT (for docs/performance.md).
#
# If `$QBLOCK nbd --help` fails (server not built), only the qemu and raw engines run and the
# output says so.
#
# Run time: 81 fio jobs by default; about 10 minutes on the project's 2-core VM (ext4 mounted
# with -o discard on a virtio disk), of which about a third goes to deleting the written qcow2
# images (discards); more while other jobs load the disk. QUICK=1 takes about a minute.
#
# Usage: bench/nbd.sh          (`make bench-nbd` builds the release binary first)
# Environment: RUNS (default 3), RUNTIME (seconds per fio job, default 4), WORKLOADS (default
#              "randwrite randread seqwrite"), DEPTHS (default "1 16 64"), ENGINES (default
#              "qblock qemu raw"), READ_SIZE (randread region, default 1G), QUICK=1 (smoke test:
#              RUNS 1, RUNTIME 1, READ_SIZE 256M unless set; ~1 minute), QBLOCK (default
#              build/release/bin/qblock), QEMU_NBD, QEMU_IMG, FIO (default qemu-nbd, qemu-img,
#              fio), BENCH_DIR (parent of the temporary directory, default /var/tmp; tmpfs is
#              refused because the servers use O_DIRECT), OUT (Markdown file, default
#              bench/results/nbd-DATE.md, nbd-DATE-quick.md with QUICK=1), STOP_TIMEOUT
#              (seconds to wait for a server to exit after SIGTERM, default 120),
#              QBLOCK_BASELINE (another qblock binary, e.g. a build of an earlier commit: with
#              it, ENGINES may name `baseline`, served like qblock, and the report adds
#              qblock/baseline, the before/after comparison of a change).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  runs=${RUNS:-1} runtime=${RUNTIME:-1} read_size=${READ_SIZE:-256M}
else
  runs=${RUNS:-3} runtime=${RUNTIME:-4} read_size=${READ_SIZE:-1G}
fi
workloads=${WORKLOADS:-randwrite randread seqwrite}
depths=${DEPTHS:-1 16 64}
engines_set=${ENGINES+set}
read -r -a engines <<<"${ENGINES:-qblock qemu raw}"
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
qemu_nbd=${QEMU_NBD:-qemu-nbd}
qemu_img=${QEMU_IMG:-qemu-img}
fio=${FIO:-fio}
bench_dir=${BENCH_DIR:-/var/tmp}
stop_timeout=${STOP_TIMEOUT:-120}
date=$(date +%F)
suffix=""
[[ $quick == 1 ]] && suffix=-quick
out=${OUT:-$repo/bench/results/nbd-$date$suffix.md}
image_size=8G
cluster_size=64k
fill_bs=1m
fill_depth=8
all_engines=(qblock qemu raw)
qblock_baseline=${QBLOCK_BASELINE:-}

die() { echo "nbd.sh: $*" >&2; exit 2; }
fail() { echo "nbd.sh: FAILED: $*" >&2; exit 1; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ $runtime =~ ^[1-9][0-9]*$ ]] || die "RUNTIME must be a positive integer (seconds), not '$runtime'"
[[ $stop_timeout =~ ^[1-9][0-9]*$ ]] || die "STOP_TIMEOUT must be a positive integer, not '$stop_timeout'"
for w in $workloads; do
  [[ $w =~ ^(randwrite|randread|seqwrite)$ ]] ||
    die "unknown workload '$w' in WORKLOADS (expected randwrite, randread, seqwrite)"
done
for d in $depths; do
  [[ $d =~ ^[1-9][0-9]*$ ]] || die "DEPTHS must be positive integers, not '$d'"
done
for e in "${engines[@]}"; do
  [[ $e =~ ^(qblock|qemu|raw|baseline)$ ]] ||
    die "unknown engine '$e' in ENGINES (expected qblock, qemu, raw, baseline)"
  if [[ $e == baseline ]]; then
    [[ -x $qblock_baseline ]] || die "ENGINES includes baseline, but QBLOCK_BASELINE is not an executable"
  fi
done
((${#engines[@]} > 0)) || die "ENGINES is empty"
read_bytes=$(numfmt --from=iec "${read_size%B}" 2>/dev/null) || die "READ_SIZE '$read_size' is not a size"
image_bytes=$(numfmt --from=iec "$image_size")
((read_bytes > 0 && read_bytes <= image_bytes && read_bytes % (1024 * 1024) == 0)) ||
  die "READ_SIZE must be a multiple of 1 MiB between 1M and $image_size, not '$read_size'"
for tool in "$qemu_nbd" "$qemu_img" "$fio" python3; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
"$fio" --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || die "$fio has no nbd engine (--enghelp)"
[[ -d $bench_dir ]] || die "BENCH_DIR $bench_dir is not a directory"
case $(stat -f -c %T "$bench_dir") in
  tmpfs | ramfs) die "BENCH_DIR $bench_dir is on $(stat -f -c %T "$bench_dir"); use a directory on a real disk (O_DIRECT)" ;;
esac

# qblock's server may not be built yet: then run the other engines and say so.
qblock_note=""
if [[ " ${engines[*]} " == *" qblock "* ]] && ! "$qblock" nbd --help >/dev/null 2>&1; then
  [[ $engines_set == set ]] && die "ENGINES includes qblock, but '$qblock nbd --help' fails"
  qblock_note="qblock engine NOT RUN: '$qblock nbd --help' fails (server not built?); only qemu and raw ran"
  engines=(qemu raw)
fi
has_engine() { [[ " ${engines[*]} " == *" $1 "* ]]; }

# Peak use: the raw engine's fallocated 8 GiB file (kept for the whole script) next to one write
# run's qcow2 image (at most a little over 8 GiB: a 4 KiB randwrite allocates a 64 KiB cluster
# per write), or next to randread's two qcow2 images of READ_SIZE each.
avail_kib=$(df -Pk "$bench_dir" | awk 'NR==2 {print $4}')
((avail_kib >= 17 * 1024 * 1024)) || die "BENCH_DIR $bench_dir has less than 17 GiB free"

tmp=$(mktemp -d "$bench_dir/qblock-nbd.XXXXXX")
# The socket's path goes into an NBD URI unescaped.
[[ $tmp =~ ^[A-Za-z0-9/._+-]+$ ]] || { rm -rf "$tmp"; die "BENCH_DIR path $tmp has characters a URI would need escaped"; }
sock=$tmp/nbd.sock
pidfile=$tmp/nbd.pid
server_log=$tmp/server.log
fio_json=$tmp/fio.json
fio_err=$tmp/fio.err
server_pid=""

# True while process PID exists and is not a zombie (a --fork server is not our child; if
# nothing reaps it, it stays a zombie after exiting).
alive() {  # alive PID
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

cleanup() {
  local i
  if [[ -n $server_pid ]] && alive "$server_pid"; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      alive "$server_pid" || break
      sleep 0.1
    done
    if alive "$server_pid"; then kill -KILL "$server_pid" 2>/dev/null || true; fi
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- engines --------------------------------------------------------------------------------

# The raw engine has one file for the whole script (see fresh_image).
image_path() {  # image_path ENGINE TAG
  if [[ $1 == raw ]]; then echo "$tmp/raw.img"; else echo "$tmp/$2.$1.qcow2"; fi
}

# Makes a fresh 8 GiB image for ENGINE at PATH, then syncs so that no earlier writeback
# overlaps the timed run. The raw file is fallocated once and afterwards reset with
# `fallocate --zero-range`, which makes all its extents unwritten again (the state of a fresh
# fallocate) without freeing blocks: on a file system mounted with -o discard (like this
# project's VM), deleting a file with gigabytes of written blocks can take from seconds to more
# than a minute of discards, which would dominate the script's run time. The qcow2 images are
# deleted and made anew: a reused file would not be a fresh image.
fresh_image() {  # fresh_image ENGINE PATH
  local engine=$1 img=$2
  case $engine in
    qblock | qemu | baseline)
      rm -f "$img"
      "$qemu_img" create -q -f qcow2 -o "cluster_size=$cluster_size" "$img" "$image_size"
      ;;
    raw)
      if [[ -e $img ]]; then
        fallocate --zero-range -l "$image_size" "$img"
      else
        fallocate -l "$image_size" "$img"
      fi
      ;;
  esac || fail "could not create $img for $engine"
  sync
}

# Sets cmd to ENGINE's server command for image PATH, socket SOCK and pid file PIDFILE.
server_cmd() {  # server_cmd ENGINE PATH SOCK PIDFILE
  local engine=$1 img=$2 s=$3 p=$4
  case $engine in
    qblock) cmd=("$qblock" nbd -k "$s" -f qcow2 --fork --pid-file "$p" -t "$img") ;;
    baseline) cmd=("$qblock_baseline" nbd -k "$s" -f qcow2 --fork --pid-file "$p" -t "$img") ;;
    qemu) cmd=("$qemu_nbd" --cache=none --aio=io_uring -f qcow2 -k "$s" --fork --pid-file "$p" -t "$img") ;;
    raw) cmd=("$qemu_nbd" --cache=none --aio=io_uring -f raw -k "$s" --fork --pid-file "$p" -t "$img") ;;
  esac
}

server_failed() {  # server_failed MESSAGE
  if [[ -s $server_log ]]; then
    echo "--- server output:" >&2
    cat "$server_log" >&2
  fi
  fail "$1"
}

# Starts ENGINE's server on PATH and waits until its pid file and socket exist.
start_server() {  # start_server ENGINE PATH
  local i
  rm -f "$sock" "$pidfile"
  server_cmd "$1" "$2" "$sock" "$pidfile"
  # A file, not a pipe, for the output: the forked server keeps it open.
  "${cmd[@]}" </dev/null >"$server_log" 2>&1 || server_failed "$1: server did not start: ${cmd[*]}"
  for ((i = 0; i < 100; i++)); do
    [[ -s $pidfile && -S $sock ]] && break
    sleep 0.1
  done
  [[ -s $pidfile && -S $sock ]] || server_failed "$1: no pid file or socket 10 s after: ${cmd[*]}"
  server_pid=$(<"$pidfile")
  [[ $server_pid =~ ^[0-9]+$ ]] || server_failed "$1: pid file $pidfile holds '$server_pid'"
  alive "$server_pid" || server_failed "$1: server $server_pid is not running"
}

# Stops the server with SIGTERM, waits for it to exit, and sets stop_secs to how long that took.
# Output of the server (none from either server in normal operation) is shown as a warning.
stop_server() {  # stop_server ENGINE WHAT
  local t0=$EPOCHREALTIME
  kill -TERM "$server_pid" 2>/dev/null || server_failed "$1: server $server_pid is gone before SIGTERM"
  while alive "$server_pid"; do
    if (($(secs_since "$t0" 0) > stop_timeout)); then
      server_failed "$1: server $server_pid still running $stop_timeout s after SIGTERM"
    fi
    sleep 0.02
  done
  stop_secs=$(secs_since "$t0" 2)
  server_pid=""
  if [[ -s $server_log ]]; then
    warnings+=("$2 $1: server output: $(tr '\n' ' ' <"$server_log")")
    echo "WARNING: ${warnings[-1]}"
  fi
}

# qcow2 images must pass `qemu-img check` after every run.
check_image() {  # check_image ENGINE PATH WHAT
  local out
  [[ $1 == raw ]] && return 0
  out=$("$qemu_img" check -f qcow2 "$2" 2>&1) ||
    { printf '%s\n' "$out" >&2; fail "$3 $1: qemu-img check $2"; }
  grep -q '^No errors were found on the image\.$' <<<"$out" ||
    { printf '%s\n' "$out" >&2; fail "$3 $1: qemu-img check $2 is not clean"; }
}

# --- workloads ------------------------------------------------------------------------------

# Sets fio_args (without --output*) for workload $1 at depth $2 against socket $3.
fio_cmd() {  # fio_cmd WORKLOAD DEPTH SOCK
  local rw bs size=()
  case $1 in
    randwrite) rw=randwrite bs=4k ;;
    randread) rw=randread bs=4k size=(--size="$read_size") ;;
    seqwrite) rw=write bs=64k ;;
    fill) rw=write bs=$fill_bs size=(--size="$read_size") ;;
  esac
  fio_args=("$fio" --name="$1" --ioengine=nbd --uri="nbd+unix:///?socket=$3" --rw="$rw"
    --bs="$bs" --iodepth="$2" "${size[@]}")
  [[ $1 != fill ]] && fio_args+=(--time_based --runtime="$runtime")
  fio_args+=(--output-format=json)
}

describe() {
  case $1 in
    randwrite) echo "4 KiB random writes, fresh image" ;;
    randread) echo "4 KiB random reads of the first $read_size, filled first" ;;
    seqwrite) echo "64 KiB sequential writes, fresh image" ;;
  esac
}

# Runs fio for WORKLOAD at DEPTH against the running server of ENGINE and sets res_iops,
# res_mibs, res_bytes from its JSON output.
run_fio() {  # run_fio ENGINE WORKLOAD DEPTH
  local parsed t0
  fio_cmd "$2" "$3" "$sock"
  rm -f "$fio_json"
  t0=$EPOCHREALTIME
  "${fio_args[@]}" --output="$fio_json" 2>"$fio_err" </dev/null || {
    cat "$fio_err" "$fio_json" >&2 2>/dev/null || true
    server_failed "$1: fio failed: ${fio_args[*]}"
  }
  parsed=$(python3 - "$fio_json" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    job = json.load(f)["jobs"][0]
d = job["read"] if job["read"]["io_bytes"] > 0 else job["write"]
if job.get("error", 0) != 0 or d["io_bytes"] <= 0 or job["read"]["io_bytes"] and job["write"]["io_bytes"]:
    sys.exit("bad fio result: error %s, read %d B, write %d B" % (job.get("error"),
             job["read"]["io_bytes"], job["write"]["io_bytes"]))
print("%.1f %.2f %d" % (d["iops"], d["bw_bytes"] / 1048576, d["io_bytes"]))
EOF
  ) || { cat "$fio_err" >&2; server_failed "$1: cannot use fio's output: ${fio_args[*]}"; }
  read -r res_iops res_mibs res_bytes <<<"$parsed"
  fio_secs=$(awk -v a="$fio_secs" -v b="$(secs_since "$t0" 3)" 'BEGIN {print a + b}')
}

# Seconds since EPOCHREALTIME value T0 with DIGITS decimals.
secs_since() {  # secs_since T0 DIGITS
  awk -v a="$1" -v b="$EPOCHREALTIME" -v d="$2" 'BEGIN {printf "%.*f", d, b - a}'
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# --- runs -----------------------------------------------------------------------------------

declare -A iops=()  # "randwrite:16:qemu" -> space-separated IOPS of every run
declare -A mibs=()  # same for MiB/s
declare -A med_iops=() med_mibs=()
warnings=()
fio_secs=0  # wall time inside fio (timed jobs and fills), for the time summary

# Rotates the engine order with the repetition, so no engine always runs first or last.
engine_order() {  # engine_order REPETITION
  local i n=${#engines[@]}
  order=()
  for ((i = 0; i < n; i++)); do order+=("${engines[(i + $1) % n]}"); done
}

# One timed run of WORKLOAD at DEPTH for ENGINE on image PATH: server up, fio, server down,
# image check. Appends to the results and to line.
one_run() {  # one_run ENGINE WORKLOAD DEPTH PATH
  local engine=$1 wl=$2 depth=$3 img=$4
  start_server "$engine" "$img"
  run_fio "$engine" "$wl" "$depth"
  stop_server "$engine" "$wl qd$depth"
  check_image "$engine" "$img" "$wl qd$depth"
  iops[$wl:$depth:$engine]+="$res_iops "
  mibs[$wl:$depth:$engine]+="$res_mibs "
  if [[ $wl == seqwrite ]] && ((res_bytes > image_bytes)); then
    warnings+=("$wl qd$depth $engine: wrote $res_bytes bytes, more than the $image_size image (fio wrapped around)")
  fi
  line+=$(printf '  %s %7.0f IOPS %7.1f MiB/s (stop %ss)' "$engine" "$res_iops" "$res_mibs" "$stop_secs")
}

run_write_workload() {  # run_write_workload WORKLOAD
  local wl=$1 depth i engine img
  for depth in $depths; do
    for ((i = 1; i <= runs; i++)); do
      engine_order "$i"
      line=""
      for engine in "${order[@]}"; do
        img=$(image_path "$engine" "$wl")
        fresh_image "$engine" "$img"
        one_run "$engine" "$wl" "$depth" "$img"
        [[ $engine == raw ]] || rm -f "$img"
      done
      printf '%-9s qd%-2s run %s:%s  [%s s]\n' "$wl" "$depth" "$i" "$line" "$(secs_since "$t_start" 0)"
    done
  done
}

# randread: each engine fills the first READ_SIZE of its own fresh image with one untimed
# sequential write pass through its own server; reads do not change the image, so every depth
# and run reads that image (with a new server each run).
run_read_workload() {
  local wl=randread depth i engine img t0
  for engine in "${engines[@]}"; do
    img=$(image_path "$engine" "$wl")
    fresh_image "$engine" "$img"
    t0=$EPOCHREALTIME
    start_server "$engine" "$img"
    run_fio "$engine" fill "$fill_depth"
    stop_server "$engine" "$wl fill"
    check_image "$engine" "$img" "$wl fill"
    sync
    printf '%-9s fill (%s, %s sequential %s writes, untimed): %s s, %.0f MiB/s  [%s s]\n' \
      "$wl" "$engine" "$read_size" "$fill_bs" "$(secs_since "$t0" 1)" "$res_mibs" "$(secs_since "$t_start" 0)"
  done
  for depth in $depths; do
    for ((i = 1; i <= runs; i++)); do
      engine_order "$i"
      line=""
      for engine in "${order[@]}"; do
        one_run "$engine" "$wl" "$depth" "$(image_path "$engine" "$wl")"
      done
      printf '%-9s qd%-2s run %s:%s  [%s s]\n' "$wl" "$depth" "$i" "$line" "$(secs_since "$t_start" 0)"
    done
  done
  for engine in "${engines[@]}"; do
    [[ $engine == raw ]] || rm -f "$(image_path "$engine" "$wl")"
  done
}

fs=$(df -T "$tmp" | awk 'NR==2 {print $2 " on " $1}')
machine="$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
fio_version=$("$fio" --version) || die "$fio --version failed"
qemu_nbd_version=$("$qemu_nbd" --version | head -1) || die "$qemu_nbd --version failed"
qemu_nbd_version=${qemu_nbd_version#qemu-nbd }
qblock_rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null) ]] && qblock_rev+=" (uncommitted changes)"
invocation="QUICK=$quick RUNS=$runs RUNTIME=$runtime WORKLOADS=\"$workloads\" DEPTHS=\"$depths\" READ_SIZE=$read_size bash bench/nbd.sh"
[[ $quick == 1 ]] && quick_note="QUICK=1 smoke run, not results" || quick_note=""

echo "machine: $machine, $fs ($tmp)"
echo "$fio_version; qemu-nbd $qemu_nbd_version; qblock: $qblock (git $qblock_rev)"
[[ -n $qblock_note ]] && echo "NOTE: $qblock_note"
echo "runs: $runs per engine, workload and depth, $runtime s each, median reported${quick_note:+; $quick_note}"
echo "engines (S socket, P pid file, IMG image; a new server for every run, stopped with SIGTERM):"
for engine in "${engines[@]}"; do
  case $engine in
    raw) create="fallocate -l $image_size IMG  (once; then fallocate --zero-range -l $image_size IMG)" ;;
    *) create="$qemu_img create -f qcow2 -o cluster_size=$cluster_size IMG $image_size" ;;
  esac
  server_cmd "$engine" IMG S P
  printf '  %-7s %s\n  %-7s %s\n' "$engine" "$create" "" "${cmd[*]}"
done
echo "workloads (fio, D = queue depth of: $depths):"
for w in $workloads; do
  fio_cmd "$w" D S
  printf '  %-9s %s\n            %s\n' "$w" "$(describe "$w")" "${fio_args[*]}"
  if [[ $w == randread ]]; then
    fio_cmd fill "$fill_depth" S
    printf '  %-9s %s\n' "" "fill: ${fio_args[*]}"
  fi
done
echo

t_start=$EPOCHREALTIME
for w in $workloads; do
  if [[ $w == randread ]]; then run_read_workload; else run_write_workload "$w"; fi
  for d in $depths; do
    for engine in "${engines[@]}"; do
      # shellcheck disable=SC2086  # the lists are space-separated on purpose
      med_iops[$w:$d:$engine]=$(median ${iops[$w:$d:$engine]})
      # shellcheck disable=SC2086
      med_mibs[$w:$d:$engine]=$(median ${mibs[$w:$d:$engine]})
    done
  done
done
elapsed=$(secs_since "$t_start" 0)
other_secs=$(awk -v a="$elapsed" -v b="$fio_secs" 'BEGIN {printf "%.0f", a - b}')
fio_secs=$(awk -v a="$fio_secs" 'BEGIN {printf "%.0f", a}')

# --- report ---------------------------------------------------------------------------------

ratio() {  # ratio WORKLOAD DEPTH ENGINE
  local a=${med_iops[$1:$2:qblock]-} b=${med_iops[$1:$2:$3]-}
  awk -v a="$a" -v b="$b" 'BEGIN {if (a != "" && b > 0) printf "%.3f", a / b; else print "n/a"}'
}
cell() {  # cell WORKLOAD DEPTH ENGINE: "IOPS (MiB/s)" or "-"
  if has_engine "$3"; then
    printf '%.0f (%.1f)' "${med_iops[$1:$2:$3]}" "${med_mibs[$1:$2:$3]}"
  else
    echo "-"
  fi
}
wl_label() {
  case $1 in
    randwrite) echo "4k randwrite" ;;
    randread) echo "4k randread" ;;
    seqwrite) echo "64k seq write" ;;
  esac
}

echo
echo "all runs and image checks passed; $elapsed s of runs: $fio_secs s in fio, $other_secs s making, checking and deleting images and starting and stopping servers"
for wmsg in "${warnings[@]}"; do echo "WARNING: $wmsg"; done
[[ -n $qblock_note ]] && echo "NOTE: $qblock_note"
echo "median IOPS (MiB/s) over $runs run(s)${quick_note:+ -- $quick_note}:"
printf '%-14s %5s %20s %20s %20s %12s %11s\n' workload depth qblock qemu raw qblock/qemu qblock/raw
for w in $workloads; do
  for d in $depths; do
    printf '%-14s %5s %20s %20s %20s %12s %11s\n' "$(wl_label "$w")" "$d" \
      "$(cell "$w" "$d" qblock)" "$(cell "$w" "$d" qemu)" "$(cell "$w" "$d" raw)" \
      "$(ratio "$w" "$d" qemu)" "$(ratio "$w" "$d" raw)"
  done
done
if has_engine baseline; then
  echo
  echo "before/after (median IOPS; qblock/baseline below 0.97 means more than 3% slower):"
  printf '%-14s %5s %20s %20s %16s\n' workload depth baseline qblock qblock/baseline
  for w in $workloads; do
    for d in $depths; do
      printf '%-14s %5s %20s %20s %16s\n' "$(wl_label "$w")" "$d" \
        "$(cell "$w" "$d" baseline)" "$(cell "$w" "$d" qblock)" "$(ratio "$w" "$d" baseline)"
    done
  done
fi

mkdir -p "$(dirname "$out")"
{
  echo "## NBD server: fio over a Unix socket (bench/nbd.sh, $date)"
  echo
  [[ -n $quick_note ]] && echo "**$quick_note.**" && echo
  [[ -n $qblock_note ]] && echo "**${qblock_note}.**" && echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $date |"
  echo "| machine | $machine |"
  echo "| file system | $fs; images in a temporary directory under \`$bench_dir\` |"
  echo "| fio | $fio_version, \`--ioengine=nbd\` (libnbd) over a Unix socket |"
  echo "| qemu-nbd | $qemu_nbd_version |"
  echo "| qblock | \`$qblock\`, git $qblock_rev${qblock_note:+, not run} |"
  echo "| image | 8 GiB qcow2 with 64 KiB clusters (\`qemu-img create\`) or a fallocated 8 GiB raw file (reset to unwritten extents with \`fallocate --zero-range\` instead of recreated); fresh before every write run |"
  echo "| runs | $runs per engine, workload and depth (engine order rotated), $runtime s time-based fio jobs, median; $elapsed s of runs in all ($fio_secs s in fio) |"
  echo
  echo "Invocation: \`$invocation\`"
  echo
  echo "Commands (S socket, P pid file, IMG image; a new server for every run, stopped with SIGTERM"
  echo "and waited for, then \`qemu-img check\` on qcow2 images; D is the queue depth):"
  echo
  echo '```'
  for engine in "${engines[@]}"; do
    case $engine in
      raw) create="fallocate -l $image_size IMG    # once; before later runs: fallocate --zero-range -l $image_size IMG" ;;
      *) create="qemu-img create -f qcow2 -o cluster_size=$cluster_size IMG $image_size" ;;
    esac
    server_cmd "$engine" IMG S P
    [[ $engine == qblock ]] && cmd[0]="qblock"
    echo "# $engine"
    echo "$create"
    echo "${cmd[*]}"
  done
  for w in $workloads; do
    echo "# $w: $(describe "$w")"
    if [[ $w == randread ]]; then
      fio_cmd fill "$fill_depth" S
      echo "${fio_args[*]}    # fill, untimed, once per engine"
    fi
    fio_cmd "$w" D S
    echo "${fio_args[*]}"
  done
  echo '```'
  echo
  echo "Median IOPS (MiB/s):"
  echo
  echo "| workload | depth | qblock | qemu-nbd | raw (qemu-nbd) | qblock/qemu | qblock/raw |"
  echo "|---|---|---|---|---|---|---|"
  for w in $workloads; do
    for d in $depths; do
      echo "| $(wl_label "$w") | $d | $(cell "$w" "$d" qblock) | $(cell "$w" "$d" qemu) | $(cell "$w" "$d" raw) | $(ratio "$w" "$d" qemu) | $(ratio "$w" "$d" raw) |"
    done
  done
  if ((runs > 1)); then
    echo
    echo "IOPS of each run (runs 1 / 2 / ...; the engine order rotates from run to run):"
    echo
    echo "| workload | depth | qblock | qemu-nbd | raw (qemu-nbd) |"
    echo "|---|---|---|---|---|"
    for w in $workloads; do
      for d in $depths; do
        row="| $(wl_label "$w") | $d |"
        for engine in "${all_engines[@]}"; do
          if has_engine "$engine"; then
            # shellcheck disable=SC2086
            row+=" $(printf '%.0f ' ${iops[$w:$d:$engine]} | sed 's/ $//; s/ / \/ /g') |"
          else
            row+=" - |"
          fi
        done
        echo "$row"
      done
    done
  fi
  for wmsg in "${warnings[@]}"; do echo; echo "Warning: $wmsg"; done
} >"$out"
echo
echo "Markdown table written to $out"
