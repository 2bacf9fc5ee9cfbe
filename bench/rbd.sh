#!/usr/bin/env bash
# qblock on Ceph RBD against QEMU's rbd driver and fio's rbd engine, side by side in one run on
# one throw-away cluster (tests/rbd/ceph-dev-cluster.sh: 1 mon + 1 OSD on 127.0.0.1, purged at
# the end). Engines, each on a fresh image per run, run order rotated every repetition:
#   W1, W2 (bench/compare.sh's shapes) on a 64 KiB-cluster qcow2 image stored on RBD:
#     qemu      qemu-img bench on a qcow2 image on QEMU's rbd driver (its default graph)
#     prealloc  the same through QEMU's preallocate filter (--image-opts, file.driver=preallocate)
#     qblock    qblock bench on a qcow2 image made by qblock create (its own preallocate filter,
#               sized in RBD objects)
#   R4K: 4 KiB writes at depth 16 to a fresh raw RBD image of 1 GiB:
#     fio       fio's rbd engine, rw=randwrite, the same number of requests
#     qblock    qblock bench -f raw with a 4100 KiB step (offsets wrap, so every request lands
#               in another RADOS object, as random 4 KiB writes over 1 GiB do; qblock bench has
#               no random mode)
# All with cache=none (rbd_cache=false). Prints the median of RUNS, the spread (min-max), the
# ratios against the issue 17 targets (W1 >= 3x qemu; R4K >= 0.95x fio) and checks every qcow2
# image of the last repetition with `qemu-img check`. Exits 1 on a failed run or check.
#
# Usage: bench/rbd.sh
# Environment: RUNS (default 3), WORKLOADS (default "W1 W2 R4K"), QBLOCK (default
#   build/release/bin/qblock), OBJECTSTORE (memstore, the default: CPU-bound, no disk in the
#   way, RAM grows with the data written; or bluestore on a sparse file), SCALE (divides
#   compare.sh's request counts; default 5 with memstore, 1 with bluestore), R4K_COUNT (default
#   40000), QUICK=1 (SCALE 50, R4K_COUNT 4000, one run: a smoke test).
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "$0")/.." && pwd)
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
runs=${RUNS:-3}
workloads=${WORKLOADS:-W1 W2 R4K}
objectstore=${OBJECTSTORE:-memstore}
if [[ $objectstore == memstore ]]; then scale=${SCALE:-5}; else scale=${SCALE:-1}; fi
r4k_count=${R4K_COUNT:-40000}
if [[ -n ${QUICK:-} ]]; then scale=50 r4k_count=4000 runs=1; fi
pattern=165
die() { echo "rbd.sh: $*" >&2; exit 2; }
[[ -x $qblock ]] || die "$qblock not found; run 'make build' first (or set QBLOCK)"
for tool in qemu-img fio ceph-mon ceph-osd rbd python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh)"
done
qemu-img --help | grep -qw rbd || die "qemu-img has no rbd driver (qemu-block-extra)"
fio --enghelp 2>/dev/null | grep -qw rbd || die "fio has no rbd engine"

work=$(mktemp -d /tmp/qbbench.XXXXXX)
trap 'bash "$repo/tests/rbd/ceph-dev-cluster.sh" purge "$work/c" >/dev/null 2>&1; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
CEPH_DEV_OBJECTSTORE=$objectstore CEPH_DEV_STORE_BYTES=$((32 << 30)) \
  bash "$repo/tests/rbd/ceph-dev-cluster.sh" start "$work/c" >"$work/cluster.log" 2>&1 ||
  { cat "$work/cluster.log" >&2; die "the cluster did not start"; }
export CEPH_CONF=$work/c/ceph.conf
echo "# rbd.sh: $objectstore OSD, $(nproc) CPUs, qblock $qblock, runs $runs, counts / $scale"

# Sets args (bench options) for workload $1.
workload() {
  case $1 in
    W1) args=(-c $((50000 / scale)) -d 16 -s 4k -S 64k) ;;  # a new cluster per write
    W2) args=(-c $((200000 / scale)) -d 16 -s 4k) ;;        # sequential 4 KiB, 16 per cluster
    R4K) args=(-c "$r4k_count" -d 16 -s 4k -S 4100k) ;;
  esac
}
engines_of() { if [[ $1 == R4K ]]; then echo "fio qblock"; else echo "qemu prealloc qblock"; fi; }

# run ENGINE WORKLOAD: prints the seconds of one run on a fresh image.
run() {
  local engine=$1 w=$2 img=b$RANDOM$RANDOM out secs
  workload "$w"
  case $w:$engine in
    R4K:fio)
      rbd create --size 1G "rbd/$img"
      fio --name=r4k --ioengine=rbd --clientname=admin --pool=rbd --rbdname="$img" \
        --rw=randwrite --bs=4k --iodepth=16 --io_size=$((r4k_count * 4096)) --size=1G \
        --randrepeat=0 --norandommap --output-format=json >"$work/fio.json"
      secs=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print(j["runtime"]/1000.0)' "$work/fio.json")
      ;;
    R4K:qblock)
      rbd create --size 1G "rbd/$img"
      out=$("$qblock" bench -w -t none -f raw --pattern=$pattern "${args[@]}" "rbd:rbd/$img")
      secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
      ;;
    *:qemu | *:prealloc)
      qemu-img create -q -f qcow2 "rbd:rbd/$img" 8G
      local target=("rbd:rbd/$img")
      if [[ $engine == prealloc ]]; then
        target=(--image-opts "driver=qcow2,file.driver=preallocate,file.file.driver=rbd,file.file.pool=rbd,file.file.image=$img")
      fi
      out=$(qemu-img bench -w -t none --pattern=$pattern "${args[@]}" "${target[@]}")
      secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
      ;;
    *:qblock)
      "$qblock" create -q -f qcow2 "rbd:rbd/$img" 8G
      out=$("$qblock" bench -w -t none --pattern=$pattern "${args[@]}" "rbd:rbd/$img")
      secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
      ;;
  esac
  [[ -n $secs ]] || { echo "rbd.sh: FAILED: $engine $w printed no time" >&2; exit 1; }
  if [[ $w != R4K ]]; then
    qemu-img check -q "rbd:rbd/$img" || { echo "rbd.sh: FAILED: qemu-img check $engine $w" >&2; exit 1; }
  fi
  rbd rm --no-progress "rbd/$img" >/dev/null 2>&1
  echo "$secs"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A times
for w in $workloads; do
  read -r -a engines <<<"$(engines_of "$w")"
  for ((r = 0; r < runs; r++)); do
    n=${#engines[@]}
    for ((k = 0; k < n; k++)); do
      e=${engines[$(((k + r) % n))]}
      t=$(run "$e" "$w")
      times[$w:$e]="${times[$w:$e]:-} $t"
      echo "# $w $e run $((r + 1)): $t s"
    done
  done
done

echo
printf '%-4s %-9s %10s %18s %10s\n' wl engine "median s" "min-max s" "req/s"
for w in $workloads; do
  workload "$w"
  count=${args[1]}
  for e in $(engines_of "$w"); do
    m=$(tr ' ' '\n' <<<"${times[$w:$e]}" | grep . | median)
    lo=$(tr ' ' '\n' <<<"${times[$w:$e]}" | grep . | sort -g | head -1)
    hi=$(tr ' ' '\n' <<<"${times[$w:$e]}" | grep . | sort -g | tail -1)
    printf '%-4s %-9s %10.3f %18s %10.0f\n' "$w" "$e" "$m" "$lo-$hi" "$(echo "$count / $m" | bc -l)"
    eval "med_${w}_${e}=$m"
  done
done
echo
ratio() { echo "$1 / $2" | bc -l; }
for w in $workloads; do
  case $w in
    W1 | W2)
      q=med_${w}_qemu p=med_${w}_prealloc b=med_${w}_qblock
      printf '%s: qblock is %.2fx qemu default, %.2fx qemu+preallocate' "$w" "$(ratio "${!q}" "${!b}")" "$(ratio "${!p}" "${!b}")"
      if [[ $w == W1 ]]; then
        awk -v x="$(ratio "${!q}" "${!b}")" 'BEGIN {print (x >= 3 ? "  (target >= 3x: PASS)" : "  (target >= 3x: FAIL)")}'
      else
        echo
      fi
      ;;
    R4K)
      printf 'R4K: qblock is %.2fx fio rbd' "$(ratio "$med_R4K_fio" "$med_R4K_qblock")"
      awk -v x="$(ratio "$med_R4K_fio" "$med_R4K_qblock")" 'BEGIN {print (x >= 0.95 ? "  (target >= 0.95x: PASS)" : "  (target >= 0.95x: FAIL)")}'
      ;;
  esac
done
