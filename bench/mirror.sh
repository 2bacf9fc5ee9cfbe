#!/usr/bin/env bash
# Side-by-side benchmark of live mirroring (issue 16, docs/performance.md "Live mirror"):
# blockdev-mirror sync=full of an 8 GiB qcow2 image holding 4 GiB of data (its first half) and
# 4 GiB of zero clusters onto a fresh local qcow2 target, `qblock storage-daemon` against
# qemu-storage-daemon 7.2 with the same QMP commands (bench/mirror_driver.py):
#  (a) idle source: seconds from blockdev-mirror to READY and to COMPLETED after block-job-complete;
#  (b) fio writing 4 KiB random writes at depth 16 into the source through the daemon's NBD
#      export for FIO_RUNTIME seconds while the copy runs: time to READY (the job converges while
#      the guest writes) and fio's IOPS.
# The input is made once (untimed) and copied fresh before every run; the daemons alternate
# (which goes first swaps every round), RUNS rounds each, medians reported. Every run is judged:
# the target must compare equal to the source (qemu-img compare) and pass qemu-img check.
#
# Usage: bench/mirror.sh     (`make bench-mirror` builds the release binary first)
# Environment: RUNS (default 5), QBLOCK (default build/release/bin/qblock), FIO_RUNTIME
#              (default 20), BENCH_DIR (default /var/tmp), QUICK=1 (sizes / 16, RUNS 1: a smoke
#              test, not results).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/bench/stats.sh"
quick=${QUICK:-0}
runs=${RUNS:-5}
scale=1
if [[ $quick == 1 ]]; then runs=${RUNS:-1}; scale=16; fi
fio_runtime=${FIO_RUNTIME:-20}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
bench_dir=${BENCH_DIR:-/var/tmp}

die() { echo "mirror.sh: $*" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-mirror' (or 'make build')"
for tool in qemu-storage-daemon qemu-img qemu-io fio python3; do
  command -v $tool >/dev/null || die "$tool not found"
done

tmp=$(mktemp -d "$bench_dir/qblock-mirror.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
half=$((4096 / scale))  # 4 GiB in MiB, scaled

# The input: random data over the first half, zero clusters over the second.
head -c $((half * 1024 * 1024)) /dev/urandom >"$tmp/data.raw"
qemu-img convert -f raw -O qcow2 "$tmp/data.raw" "$tmp/in.qcow2"
qemu-img resize -q "$tmp/in.qcow2" $((2 * half))M
rm -f "$tmp/data.raw"
zero_cmds=()  # qemu-io takes at most 2 GiB per request: 256 MiB pieces
for ((m = half; m < 2 * half; m += 256)); do zero_cmds+=(-c "write -z ${m}M $((half * 2 - m < 256 ? half * 2 - m : 256))M"); done
qemu-io -f qcow2 "${zero_cmds[@]}" "$tmp/in.qcow2" >/dev/null
qemu-img map --output=json "$tmp/in.qcow2" >"$tmp/in.map"  # no grep -q in a pipe: pipefail
grep -q '"zero": true, "data": false' "$tmp/in.map" || die "input has no zero clusters"

# run ENGINE MODE: one mirror; prints the driver's timings line.
run() {
  local engine=$1 mode=$2 dir=$tmp/run
  rm -rf "$dir" && mkdir "$dir"
  cp --sparse=always "$tmp/in.qcow2" "$dir/src.qcow2"
  qemu-img create -q -f qcow2 "$dir/dst.qcow2" $((2 * half))M
  sync
  local daemon=(qemu-storage-daemon)
  [[ $engine == qblock ]] && daemon=("$qblock" storage-daemon)
  "${daemon[@]}" --chardev socket,id=m,path="$dir/qmp.sock",server=on,wait=off \
    --monitor chardev=m >"$dir/daemon.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S $dir/qmp.sock ]] && break; sleep 0.05; done
  local fio_args=()
  [[ $mode == fio ]] && fio_args=(--fio "$fio_runtime" "$dir/nbd.sock")
  local line
  line=$(python3 "$repo/bench/mirror_driver.py" "$dir/qmp.sock" "$dir/src.qcow2" \
    "$dir/dst.qcow2" "${fio_args[@]}") || { cat "$dir/daemon.log" >&2; die "$engine $mode failed"; }
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  wait "$pid" || die "$engine exited with status $?"
  pid=
  qemu-img check -q "$dir/dst.qcow2" || die "$engine $mode: target fails qemu-img check"
  qemu-img compare -q "$dir/src.qcow2" "$dir/dst.qcow2" || die "$engine $mode: target differs"
  echo "$line"
}

field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

echo "mirror of $((2 * half)) MiB ($half MiB data, $half MiB zero clusters), $runs rounds," \
  "fio runtime ${fio_runtime}s, in $bench_dir"
for mode in idle fio; do
  declare -A ready=() complete=() iops=()
  for ((r = 0; r < runs; r++)); do
    engines=(qemu qblock)
    ((r % 2)) && engines=(qblock qemu)
    for e in "${engines[@]}"; do
      line=$(run "$e" "$mode")
      echo "  $mode round $((r + 1)) $e: $line"
      ready[$e]+=" $(field ready "$line")"
      complete[$e]+=" $(field complete "$line")"
      [[ $mode == fio ]] && iops[$e]+=" $(field iops "$line")"
    done
  done
  for e in qemu qblock; do
    # shellcheck disable=SC2086
    echo "$mode $e: ready median $(median ${ready[$e]}) s ($(minmax ${ready[$e]})), complete" \
      "median $(median ${complete[$e]}) s ($(minmax ${complete[$e]}))" \
      "$([[ $mode == fio ]] && echo "iops median $(median ${iops[$e]}) ($(minmax ${iops[$e]}))")"
  done
  # shellcheck disable=SC2086
  if [[ $mode == idle ]]; then
    echo "idle: qblock speed-up to complete: $(ratio "$(median ${complete[qblock]})" \
      "$(median ${complete[qemu]})")"
  else
    # The job completes after fio's fixed runtime: its time to READY is what the guest's
    # writes slow down.
    echo "fio: qblock speed-up to ready: $(ratio "$(median ${ready[qblock]})" \
      "$(median ${ready[qemu]})"), guest IOPS qblock/qemu: $(ratio "$(median ${iops[qemu]})" \
      "$(median ${iops[qblock]})")"
  fi
  unset ready complete iops
done
