#!/usr/bin/env bash
# The rbd protocol driver against QEMU's on one throw-away Ceph cluster (1 mon + 1 memstore
# OSD on 127.0.0.1, started by ceph-dev-cluster.sh beside this script and purged at the end,
# also on failure): qblock and qemu-img/qemu-io reading each other's raw and qcow2 images on
# RBD; `info` and open errors as qemu-img 7.2 prints them; snapshots read-only; discards
# smaller than librbd's 64 KiB granularity never reading back; and a seeded random workload
# (writes, write-zeroes, discards, parallel aio writes) on qcow2-on-RBD and raw RBD, judged by
# `qemu-img check` and `qemu-img compare` against local images given the same sequence by
# qemu-io. Exits 77 (skipped) when the Ceph binaries are not installed.
#
# Usage: interop.sh [SEED [OPS]]   Environment: QBLOCK (the qblock binary; required),
# RBD_KEEP=1 keeps the scratch directory and the cluster running for inspection.
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
seed=${1:-17} ops=${2:-300}
for tool in ceph-mon ceph-osd ceph rbd; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool not installed (apt-get install ceph-mon ceph-osd ceph-common; see scripts/install-deps.sh)"
    exit 77
  fi
done
for tool in qemu-img qemu-io cmp; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
if ! qemu-img --help | grep -qw rbd; then
  echo "missing QEMU's rbd driver (Debian qemu-block-extra)" >&2
  exit 2
fi

# Admin socket paths must stay short: the cluster lives in a short directory of its own.
work=$(mktemp -d /tmp/qbrbd.XXXXXX)
cluster=$work/c
cleanup() {
  if [[ -n ${RBD_KEEP:-} ]]; then
    echo "# kept $work (CEPH_CONF=$cluster/ceph.conf)"
    return
  fi
  bash "$here/ceph-dev-cluster.sh" purge "$cluster" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if ! bash "$here/ceph-dev-cluster.sh" start "$cluster" >"$work/cluster.log" 2>&1; then
  cat "$work/cluster.log" >&2
  echo "FAIL: the Ceph cluster did not start" >&2
  exit 1
fi
export CEPH_CONF=$cluster/ceph.conf
echo "# cluster up ($CEPH_CONF); qblock: $QBLOCK; seed $seed, $ops ops"

passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
untimed() { grep -v ' ops; ' | grep -v 'ops/sec' | grep -v ' librbd: '; }

# same DESC CMD1 -- CMD2: both commands print the same (stdout+stderr, timing lines and
# librbd's log lines dropped, qemu-io's name for itself unified) and exit alike.
same() {
  local desc=$1 rc1 rc2 a=() b=()
  shift
  while [[ $1 != -- ]]; do a+=("$1"); shift; done
  shift
  b=("$@")
  "${a[@]}" 2>&1 | untimed >"$work/a.out"
  rc1=${PIPESTATUS[0]}
  "${b[@]}" 2>&1 | untimed >"$work/b.out"
  rc2=${PIPESTATUS[0]}
  if ((rc1 != rc2)); then
    bad "$desc" "exit $rc1 vs $rc2: $(head -c 300 "$work/a.out")"
  elif ! cmp -s "$work/a.out" "$work/b.out"; then
    bad "$desc" "$(diff "$work/a.out" "$work/b.out" | head -n 8 | tr '\n' ' ')"
  else
    ok "$desc"
  fi
}
# expect DESC CMD...: the command succeeds.
expect() {
  local desc=$1
  shift
  if "$@" >"$work/e.out" 2>&1; then ok "$desc"; else bad "$desc" "$(head -c 300 "$work/e.out")"; fi
}

M=$((1 << 20))
size=$((32 * M))

# --- creation and info -----------------------------------------------------------------------
expect "qblock create raw" "$QBLOCK" create -q -f raw rbd:rbd/raw1 $size
expect "qblock create qcow2" "$QBLOCK" create -q -f qcow2 rbd:rbd/q1 $size
qemu-img create -q -f raw rbd:rbd/raw2 $size
qemu-img create -q -f qcow2 rbd:rbd/q2 $size
for img in raw1 raw2 q1 q2; do
  same "info $img" "$QBLOCK" info "rbd:rbd/$img" -- qemu-img info "rbd:rbd/$img"
  same "info --output=json $img" "$QBLOCK" info --output=json "rbd:rbd/$img" -- \
    qemu-img info --output=json "rbd:rbd/$img"
done
same "info with id and conf" "$QBLOCK" info "rbd:rbd/raw1:id=admin:conf=$CEPH_CONF" -- \
  qemu-img info "rbd:rbd/raw1:id=admin:conf=$CEPH_CONF"
same "create over an existing image" "$QBLOCK" create -q -f raw rbd:rbd/raw1 1M -- \
  qemu-img create -q -f raw rbd:rbd/raw1 1M
same "missing image" "$QBLOCK" info rbd:rbd/nope -- qemu-img info rbd:rbd/nope
same "missing pool" "$QBLOCK" info rbd:nopool/x -- qemu-img info rbd:nopool/x
same "no pool" "$QBLOCK" info rbd:rbd -- qemu-img info rbd:rbd
same "bad conf key" "$QBLOCK" info rbd:rbd/raw1:nosuchkey=1 -- qemu-img info rbd:rbd/raw1:nosuchkey=1
same "json without image" "$QBLOCK" info 'json:{"driver":"raw","file":{"driver":"rbd","pool":"rbd"}}' -- \
  qemu-img info 'json:{"driver":"raw","file":{"driver":"rbd","pool":"rbd"}}'

# --- each reads what the other wrote ---------------------------------------------------------
fill=(-c "write -P 0x11 0 1M" -c "write -P 0x22 5M 3M" -c "write -z 6M 64k" -c "write -P 0x33 31M 1M")
check=(-c "read -P 0x11 0 1M" -c "read -P 0x22 5M 1M" -c "read -P 0 6M 64k" -c "read -P 0x22 6208k 1984k"
  -c "read -P 0 1M 4M" -c "read -P 0x33 31M 1M")
for pair in "raw1 raw" "q1 qcow2"; do
  set -- $pair
  img=$1 fmt=$2
  qemu-io -f "$fmt" "${fill[@]}" "rbd:rbd/$img" >/dev/null
  same "qblock reads qemu-io's $fmt" "$QBLOCK" io -f "$fmt" -r "${check[@]}" "rbd:rbd/$img" -- \
    qemu-io -f "$fmt" -r "${check[@]}" "rbd:rbd/$img"
done
for pair in "raw2 raw" "q2 qcow2"; do
  set -- $pair
  img=$1 fmt=$2
  "$QBLOCK" io -f "$fmt" "${fill[@]}" "rbd:rbd/$img" >/dev/null
  same "qemu-io reads qblock's $fmt" qemu-io -f "$fmt" -r "${check[@]}" "rbd:rbd/$img" -- \
    "$QBLOCK" io -f "$fmt" -r "${check[@]}" "rbd:rbd/$img"
done
expect "qemu-img check of qblock's qcow2" qemu-img check -q rbd:rbd/q2
expect "qemu-img compare q1 q2" qemu-img compare -q rbd:rbd/q1 rbd:rbd/q2
expect "qemu-img compare raw1 raw2" qemu-img compare -q -f raw -F raw rbd:rbd/raw1 rbd:rbd/raw2
same "map of raw" "$QBLOCK" map --output=json -f raw rbd:rbd/raw2 -- qemu-img map --output=json -f raw rbd:rbd/raw2
same "map of qcow2" "$QBLOCK" map --output=json rbd:rbd/q2 -- qemu-img map --output=json rbd:rbd/q2
expect "convert local -> RBD qcow2" bash -c "qemu-img create -q -f qcow2 $work/src.qcow2 8M &&
  qemu-io -c 'write -P 0x44 1M 2M' $work/src.qcow2 >/dev/null &&
  $QBLOCK convert -O qcow2 $work/src.qcow2 rbd:rbd/conv &&
  qemu-img check -q rbd:rbd/conv && qemu-img compare -q $work/src.qcow2 rbd:rbd/conv"

# --- discard smaller than librbd's granularity ----------------------------------------------
qemu-img create -q -f raw rbd:rbd/d1 4M
qblock_discard=(-c "write -P 0x55 0 256k" -c "discard 0 4k" -c "discard 68k 8k" -c "discard 100k 120k")
"$QBLOCK" io -f raw -d unmap "${qblock_discard[@]}" rbd:rbd/d1 >/dev/null
expect "discarded pieces read as zeros" qemu-io -f raw -r -c "read -P 0 0 4k" -c "read -P 0x55 4k 64k" \
  -c "read -P 0 68k 8k" -c "read -P 0x55 76k 24k" -c "read -P 0 100k 120k" -c "read -P 0x55 220k 36k" rbd:rbd/d1
if qemu-io -f raw -r -c "read -P 0 0 4k" -c "read -P 0 68k 8k" -c "read -P 0 100k 120k" rbd:rbd/d1 | grep -q Pattern; then
  bad "discard" "a discarded range reads back old data"
fi

# --- snapshots are read-only -----------------------------------------------------------------
rbd snap create rbd/raw2@s1 >/dev/null 2>&1
same "write to a snapshot refused" "$QBLOCK" io -f raw -c "write 0 4k" rbd:rbd/raw2@s1 -- \
  qemu-io -f raw -c "write 0 4k" rbd:rbd/raw2@s1
"$QBLOCK" io -f raw -c "write -P 0x66 0 1M" rbd:rbd/raw2 >/dev/null
rbd snap create rbd/raw2@s2 >/dev/null 2>&1
for name in raw2 raw2@s1; do
  same "info lists the RBD snapshots of $name" "$QBLOCK" info "rbd:rbd/$name" -- qemu-img info "rbd:rbd/$name"
  same "info --output=json lists the RBD snapshots of $name" "$QBLOCK" info --output=json "rbd:rbd/$name" -- \
    qemu-img info --output=json "rbd:rbd/$name"
done
same "snapshot keeps the old data" "$QBLOCK" io -f raw -r -c "read -P 0x11 0 1M" rbd:rbd/raw2@s1 -- \
  qemu-io -f raw -r -c "read -P 0x11 0 1M" rbd:rbd/raw2@s1

# --- random workload: qcow2 on RBD and raw RBD against local images ----------------------------
RANDOM=$seed
cmds=()
for ((i = 0; i < ops; i++)); do
  off=$(((RANDOM * 32768 + RANDOM) % (size / 512) * 512))
  len=$(((RANDOM % 512 + 1) * 512))
  ((off + len > size)) && len=$((size - off))
  pat=$((RANDOM % 255 + 1))
  case $((RANDOM % 12)) in
    0 | 1 | 2 | 3 | 4) cmds+=("write -P $pat $off $len") ;;
    5) cmds+=("write -z $off $len") ;;
    6) cmds+=("write -z -u $off $len") ;;
    7) cmds+=("discard $off $len") ;;
    8) cmds+=("flush") ;;
    *)
      # Parallel requests, disjoint: four aio writes 1 MiB apart, then a drain.
      base=$((off / M * M % (size - 4 * M)))
      for k in 0 1 2 3; do cmds+=("aio_write -P $(((pat + k) % 255 + 1)) $((base + k * M + (off % M) / 512 * 512 % (M - len % M))) $((len % M))"); done
      cmds+=("aio_flush")
      ;;
  esac
done
script=()
for c in "${cmds[@]}"; do script+=(-c "$c"); done
for fmt in qcow2 raw; do
  qemu-img create -q -f "$fmt" "$work/ref.$fmt" $size
  "$QBLOCK" create -q -f "$fmt" "rbd:rbd/rand-$fmt" $size
  if ! "$QBLOCK" io -f "$fmt" -d unmap "${script[@]}" "rbd:rbd/rand-$fmt" >"$work/rand.out" 2>&1; then
    bad "random workload on $fmt" "$(grep -v ' ops; \|ops/sec\|^wrote\|^discard\|^read' "$work/rand.out" | head -c 300)"
    continue
  fi
  qemu-io -f "$fmt" -d unmap "${script[@]}" "$work/ref.$fmt" >/dev/null 2>&1
  if [[ $fmt == qcow2 ]]; then
    expect "qemu-img check after the random workload" qemu-img check -q rbd:rbd/rand-qcow2
  fi
  expect "random workload on $fmt equals qemu-io's" qemu-img compare -q -f "$fmt" -F "$fmt" \
    "rbd:rbd/rand-$fmt" "$work/ref.$fmt"
done
# Depth 16 through qblock bench on qcow2-on-RBD (allocating writes in parallel), then QEMU's view.
"$QBLOCK" create -q -f qcow2 rbd:rbd/bench $size
expect "qblock bench -d 16 on qcow2-on-RBD" "$QBLOCK" bench -w -d 16 -c 2000 -s 4k -S 20k --pattern=165 rbd:rbd/bench
expect "qemu-img check after bench" qemu-img check -q rbd:rbd/bench
expect "qblock and qemu-img read the bench image alike" bash -c "
  $QBLOCK convert -O raw rbd:rbd/bench $work/bench-qblock.raw &&
  qemu-img convert -O raw rbd:rbd/bench $work/bench-qemu.raw &&
  cmp $work/bench-qblock.raw $work/bench-qemu.raw"

echo "$passed passed, $failed failed"
((failed == 0))
