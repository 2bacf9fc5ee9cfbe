#!/usr/bin/env bash
# Side-by-side benchmark of encrypted qcow2 (issue 13, docs/performance.md "Encrypted qcow2:
# bench/encrypted.sh"): an 8 GiB aes-256-xts LUKS qcow2 image with 64 KiB clusters, made by
# `qemu-img create` with the same secret for every engine, served over NBD on a Unix socket by
#   qemu    qemu-storage-daemon (QEMU 7.2), file node with cache.direct=on, aio=io_uring
#   qblock  qblock storage-daemon with the same command line
#   plain   qemu-storage-daemon on an *unencrypted* qcow2 image of the same shape (the cost of
#           the NBD path and the qcow2 metadata without any cipher: a ceiling, not a rival)
# qemu-img bench 7.2 has no --object option, so it cannot open an encrypted image itself; both
# engines therefore decrypt and encrypt in their storage daemon, and one client drives them all
# alike. Workloads:
#   E1  4 KiB writes, each into a new cluster (W1's shape: qemu-img bench -w -s 4k -S 64k,
#       queue depth 16) on a fresh image
#   E2  sequential 64 KiB writes (qemu-img bench -w -s 64k, queue depth 16) on a fresh image
#   E3  4 KiB random reads within the first READ_SIZE of an image that an untimed sequential
#       1 MiB write pass through the same engine filled first (fio's nbd engine, time-based
#       RUNTIME seconds, iodepth 16: qemu-img bench reads only at fixed steps)
# Engines alternate in every round (the order rotates), each run starts its own daemon on a
# fresh image and stops it with SIGTERM afterwards; every image of the last round passes
# `qemu-img check`, and E1/E2's qblock and qemu images read back identically
# (`qemu-img compare --object ...`). Prints each run, the medians of RUNS rounds (MiB/s for E1
# and E2, IOPS for E3) with their spread, and the ratio qblock/qemu. Exits 1 on a failed run or
# check.
#
# Usage: bench/encrypted.sh        (`make bench-encrypted` builds the release binary first)
# Environment: RUNS (default 5), WORKLOADS (default "E1 E2 E3"), QUICK=1 (counts / 10,
#              RUNTIME 1, READ_SIZE 128M: a smoke test), RUNTIME (seconds per E3 run,
#              default 5), READ_SIZE (E3's region, default 1G), QBLOCK (default
#              build/release/bin/qblock), BENCH_DIR (parent of the temporary directory,
#              default /var/tmp; tmpfs is refused because the daemons use O_DIRECT).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/stats.sh
source "$repo/bench/stats.sh"
# qemu-img create of a LUKS image retried while QEMU fails its PBKDF2 calibration ("Unable to
# get accurate CPU usage", a flake of loaded machines).
source "$repo/tests/lib/qemu_img_retry.rc"
quick=${QUICK:-0}
if [[ $quick == 1 ]]; then
  runs=${RUNS:-1} runtime=${RUNTIME:-1} read_size=${READ_SIZE:-128M}
else
  runs=${RUNS:-5} runtime=${RUNTIME:-5} read_size=${READ_SIZE:-1G}
fi
workloads=${WORKLOADS:-E1 E2 E3}
qblock=${QBLOCK:-$repo/build/release/bin/qblock}
bench_dir=${BENCH_DIR:-/var/tmp}
engines=(qemu qblock plain)
image_size=8G
secret=qblock-bench-passphrase

die() { echo "encrypted.sh: $*" >&2; exit 2; }
fail() { echo "encrypted.sh: FAILED: $*" >&2; exit 1; }

[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer, not '$runs'"
[[ $runtime =~ ^[1-9][0-9]*$ ]] || die "RUNTIME must be a positive integer (seconds), not '$runtime'"
[[ -x $qblock ]] || die "$qblock not found; run 'make bench-encrypted' (or 'make build') first"
for w in $workloads; do
  [[ $w =~ ^E[1-3]$ ]] || die "unknown workload '$w' in WORKLOADS (expected E1, E2, E3)"
done
for tool in qemu-img qemu-storage-daemon fio; do
  command -v "$tool" >/dev/null || die "$tool not found"
done
fio --enghelp 2>/dev/null | grep -qx '[[:space:]]*nbd' || die "fio has no nbd engine (--enghelp)"
read_bytes=$(numfmt --from=iec "$read_size") || die "READ_SIZE '$read_size' is not a size"
((read_bytes >= 1048576 && read_bytes % 1048576 == 0)) || die "READ_SIZE must be a multiple of 1 MiB"
[[ -d $bench_dir ]] || die "BENCH_DIR $bench_dir is not a directory"
case $(stat -f -c %T "$bench_dir") in
  tmpfs | ramfs) die "BENCH_DIR $bench_dir is on $(stat -f -c %T "$bench_dir"); use a directory on a real disk (O_DIRECT)" ;;
esac

tmp=$(mktemp -d "$bench_dir/qblock-encrypted.XXXXXX")
# The socket's path goes into an NBD URI unescaped.
[[ $tmp =~ ^[A-Za-z0-9/._+-]+$ ]] || { rm -rf "$tmp"; die "BENCH_DIR path $tmp has characters a URI would need escaped"; }
sock=$tmp/nbd.sock
uri="nbd+unix:///disk?socket=$sock"
daemon_pid=""
stop_daemon() {
  [[ -n $daemon_pid ]] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" || fail "the daemon exited with status $? (log: $(cat "$tmp/daemon.log"))"
  daemon_pid=""
}
cleanup() {
  [[ -n $daemon_pid ]] && kill -KILL "$daemon_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
object=(--object "secret,id=sec0,data=$secret")

# One empty image of each kind, made once (iter-time 10 ms: unlocking is not measured; and one
# key-slot calibration instead of one per run): a fresh image is a copy of its template.
qemu-img create -q -f qcow2 "${object[@]}" -o encrypt.format=luks,encrypt.key-secret=sec0 \
  -o encrypt.cipher-alg=aes-256,encrypt.cipher-mode=xts,encrypt.iter-time=10,cluster_size=64k \
  "$tmp/template.luks.qcow2" "$image_size" || fail "could not create the LUKS template image"
qemu-img create -q -f qcow2 -o cluster_size=64k "$tmp/template.plain.qcow2" "$image_size" ||
  fail "could not create the plain template image"

# fresh_image ENGINE PATH: a new image for ENGINE.
fresh_image() {
  local kind=luks
  [[ $1 == plain ]] && kind=plain
  cp --sparse=always "$tmp/template.$kind.qcow2" "$2" || fail "could not create $2"
  sync
}

# start_daemon ENGINE PATH: serves PATH as export "disk" on $sock until stop_daemon.
start_daemon() {
  local engine=$1 img=$2 encrypt=',"encrypt":{"format":"luks","key-secret":"sec0"}'
  local -a daemon=(qemu-storage-daemon)
  [[ $engine == qblock ]] && daemon=("$qblock" storage-daemon)
  [[ $engine == plain ]] && encrypt=""
  rm -f "$sock"
  "${daemon[@]}" "${object[@]}" \
    --blockdev "{\"driver\":\"qcow2\",\"node-name\":\"fmt\"$encrypt,\"file\":{\"driver\":\"file\",\"filename\":\"$img\",\"cache\":{\"direct\":true},\"aio\":\"io_uring\"}}" \
    --nbd-server "addr.type=unix,addr.path=$sock" \
    --export type=nbd,id=e,node-name=fmt,name=disk,writable=on >"$tmp/daemon.log" 2>&1 &
  daemon_pid=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -S $sock ]] && return 0
    kill -0 "$daemon_pid" 2>/dev/null || fail "$engine daemon exited: $(cat "$tmp/daemon.log")"
    sleep 0.05
  done
  fail "$engine daemon did not create $sock"
}

# bench_seconds ARGS...: runs qemu-img bench on the export, prints its "Run completed" time.
bench_seconds() {
  local out
  out=$(qemu-img bench -f raw "$@" "$uri") || fail "qemu-img bench $* failed"
  sed -n 's/^Run completed in \([0-9.]*\) seconds\.$/\1/p' <<<"$out"
}

count() { if [[ $quick == 1 ]]; then echo $(($1 / 10)); else echo "$1"; fi; }
e1_count=$(count 20000) e2_count=$(count 16384)

# run WORKLOAD ENGINE PATH: one measurement; prints the figure (MiB/s or IOPS).
run() {
  local w=$1 engine=$2 img=$3 secs
  fresh_image "$engine" "$img"
  start_daemon "$engine" "$img"
  case $w in
    E1)
      secs=$(bench_seconds -w --pattern=165 -s 4k -S 64k -d 16 -c "$e1_count")
      awk -v n="$e1_count" -v s="$secs" 'BEGIN {printf "%.1f", n * 4 / 1024 / s}'
      ;;
    E2)
      secs=$(bench_seconds -w --pattern=165 -s 64k -d 16 -c "$e2_count")
      awk -v n="$e2_count" -v s="$secs" 'BEGIN {printf "%.1f", n * 64 / 1024 / s}'
      ;;
    E3)
      bench_seconds -w --pattern=165 -s 1M -d 8 -c $((read_bytes / 1048576)) >/dev/null
      fio --name=e3 --ioengine=nbd --uri="$uri" --rw=randread --bs=4k --iodepth=16 \
        --size="$read_bytes" --time_based --runtime="$runtime" --output-format=json \
        --output="$tmp/fio.json" >"$tmp/fio.err" 2>&1 || fail "fio: $(cat "$tmp/fio.err")"
      python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"])' "$tmp/fio.json"
      ;;
  esac
  stop_daemon
}

unit() { if [[ $1 == E3 ]]; then echo IOPS; else echo MiB/s; fi; }
describe() {
  case $1 in
    E1) echo "4 KiB writes, each into a new cluster, QD16 ($e1_count writes)" ;;
    E2) echo "sequential 64 KiB writes, QD16 ($((e2_count / 16)) MiB)" ;;
    E3) echo "4 KiB random reads in the first $read_size, QD16, ${runtime}s" ;;
  esac
}

echo "encrypted qcow2 (LUKS aes-256-xts, 64 KiB clusters, $image_size) over NBD, $runs rounds, in $bench_dir"
echo "qblock: $qblock ($(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)); $(qemu-img --version | head -1)"
for w in $workloads; do
  echo "$w: $(describe "$w")"
  declare -A got=()
  for ((r = 0; r < runs; r++)); do
    order=("${engines[@]:r%3}" "${engines[@]:0:r%3}")
    line="  round $((r + 1)):"
    for e in "${order[@]}"; do
      v=$(run "$w" "$e" "$tmp/$w.$e.qcow2")
      got[$e]+=" $v"
      line+=" $e $v"
    done
    echo "$line"
  done
  for e in "${engines[@]}"; do
    # shellcheck disable=SC2086
    echo "  $w $e: median $(median ${got[$e]}) $(unit "$w") (range $(minmax ${got[$e]}))"
  done
  # shellcheck disable=SC2086
  echo "  $w qblock/qemu: $(ratio "$(median ${got[qemu]})" "$(median ${got[qblock]})")"
  for e in "${engines[@]}"; do
    img=$tmp/$w.$e.qcow2
    if [[ $e == plain ]]; then
      qemu-img check -q "$img" || fail "$w $e: qemu-img check"
    else
      qemu-img check -q "${object[@]}" --image-opts "driver=qcow2,file.filename=$img,encrypt.key-secret=sec0" ||
        fail "$w $e: qemu-img check"
    fi
  done
  if [[ $w != E3 ]]; then
    qemu-img compare -q "${object[@]}" --image-opts \
      "driver=qcow2,file.filename=$tmp/$w.qemu.qcow2,encrypt.key-secret=sec0" \
      "driver=qcow2,file.filename=$tmp/$w.qblock.qcow2,encrypt.key-secret=sec0" ||
      fail "$w: the qblock and qemu images differ"
  fi
  rm -f "$tmp/$w".*.qcow2
  unset got
done
