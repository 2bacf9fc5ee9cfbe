#!/usr/bin/env bash
# qcow2 images with an external data file (qcow2-format.md §10) both ways with QEMU 7.2:
#  - QEMU writes: qemu-img creates, qemu-io runs a random workload of misaligned writes, zero
#    writes and discards; qblock must read the image exactly as qemu-img does (both converted
#    to raw and compared) and find it clean (`qblock check`).
#  - qblock writes: qblock creates and runs the same workload; the image must pass
#    `qemu-img check`, read as the image qemu-io wrote with the same workload
#    (`qemu-img compare`), and the data file must hold the same bytes as QEMU's; with
#    data_file_raw=on it must read as the guest disk on its own.
# Cluster sizes 512, 4k, 64k and 2M; data_file_raw off (with and without a backing file) and
# on. With extended_l2=on (16k, 64k and 2M clusters) `qemu-img map` of both images must agree
# too (the subcluster bitmaps). Then LUKS-encrypted images with a data file, both ways.
# Environment: QBLOCK (the qblock binary); SEED (optional).
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
. "$(dirname "$0")/../lib/qemu_img_retry.rc"
. "$(dirname "$0")/../lib/random_workload.rc"
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-qcow2-data-file.XXXXXX")
# KEEP=1 keeps the directory and, for a failed qblock-written case, its images and commands.
if [ -n "${KEEP:-}" ]; then echo "kept: $dir" >&2; else trap 'rm -rf "$dir"' EXIT; fi
cd "$dir" || exit 1
RANDOM=${SEED:-210}
SIZE=$((2 * 1024 * 1024 + 7 * 4096))  # not a whole number of 64k clusters

make_base

for combo in "off 512" "off 4k" "off 64k" "off 2M" "on 16k" "on 64k" "on 2M"; do
  read -r ext cs <<<"$combo"
  for mode in off backing on; do
    opts="cluster_size=$cs,extended_l2=$ext,data_file_raw=$([ $mode = on ] && echo on || echo off)"
    back=()
    [ $mode = backing ] && back=(-b base.qcow2 -F qcow2)
    name="cs=$cs $mode extended_l2=$ext"
    workload 25 unmap

    # ---- QEMU writes, qblock reads ----
    rm -f q.qcow2 qd.raw qemu.raw qblock.raw
    qemu-img create -q -f qcow2 -o "$opts,data_file=qd.raw" "${back[@]}" q.qcow2 $SIZE
    qemu-io "${cmds[@]}" q.qcow2 >/dev/null
    qemu-img convert -O raw q.qcow2 qemu.raw
    ok=1
    "$QBLOCK" convert -O raw q.qcow2 qblock.raw || ok=0
    cmp -s qemu.raw qblock.raw || ok=0
    "$QBLOCK" check q.qcow2 >/dev/null || ok=0
    ok_or_fail $ok "qemu-written $name (qblock reads it differently or finds errors)"

    # ---- qblock writes, QEMU reads ----
    rm -f t.qcow2 td.raw
    ok=1
    "$QBLOCK" create -q -f qcow2 -o "$opts,data_file=td.raw" "${back[@]}" t.qcow2 $SIZE || ok=0
    "$QBLOCK" io "${cmds[@]}" t.qcow2 >/dev/null || ok=0
    qemu-img check -q t.qcow2 || ok=0
    qemu-img compare -q q.qcow2 t.qcow2 || ok=0
    cmp -s qd.raw td.raw || ok=0
    if [ $mode = on ]; then
      qemu-img compare -q -f raw -F raw td.raw qemu.raw || ok=0
    fi
    if [ $ext = on ]; then
      cmp -s <(qemu-img map --output=json q.qcow2) <(qemu-img map --output=json t.qcow2) || ok=0
    fi
    [ $ok = 1 ] || [ -z "${KEEP:-}" ] || { printf "%q " "${cmds[@]}" > "cmds-$cs-$mode"; cp t.qcow2 "t-$cs-$mode.qcow2"; cp td.raw "td-$cs-$mode.raw"; cp q.qcow2 "q-$cs-$mode.qcow2"; cp qd.raw "qd-$cs-$mode.raw"; }
    ok_or_fail $ok "qblock-written $name (check, compare, map or data file bytes differ from QEMU's)"
  done
done
# LUKS-encrypted images with a data file (§9, §10: the IV is the host offset, which in a data
# file is the guest offset), standard and extended L2 entries, both ways.
sec=(--object secret,id=s,data=x)
img() { echo "driver=qcow2,file.filename=$1,encrypt.key-secret=s"; }
for ext in off on; do
  opts="cluster_size=64k,extended_l2=$ext,encrypt.format=luks,encrypt.key-secret=s"
  name="LUKS extended_l2=$ext"
  workload 25 unmap
  rm -f q.qcow2 qd.raw t.qcow2 td.raw qemu.raw qblock.raw
  qemu-img create -q -f qcow2 "${sec[@]}" -o "$opts,data_file=qd.raw" q.qcow2 $SIZE
  qemu-io "${sec[@]}" --image-opts "${cmds[@]}" "$(img q.qcow2)" >/dev/null
  qemu-img convert "${sec[@]}" --image-opts "$(img q.qcow2)" -O raw qemu.raw
  ok=1
  "$QBLOCK" convert "${sec[@]}" --image-opts "$(img q.qcow2)" -O raw qblock.raw || ok=0
  cmp -s qemu.raw qblock.raw || ok=0
  "$QBLOCK" check "${sec[@]}" --image-opts "$(img q.qcow2)" >/dev/null || ok=0
  ok_or_fail $ok "qemu-written $name (qblock reads it differently or finds errors)"
  ok=1
  "$QBLOCK" create -q -f qcow2 "${sec[@]}" -o "$opts,data_file=td.raw" t.qcow2 $SIZE || ok=0
  "$QBLOCK" io "${sec[@]}" --image-opts "${cmds[@]}" "$(img t.qcow2)" >/dev/null || ok=0
  qemu-img check -q "${sec[@]}" --image-opts "$(img t.qcow2)" || ok=0
  qemu-img compare -q "${sec[@]}" --image-opts "$(img q.qcow2)" "$(img t.qcow2)" || ok=0
  # The data file holds ciphertext, not the guest's bytes.
  cmp -s td.raw qemu.raw && ok=0
  ok_or_fail $ok "qblock-written $name (check or compare differ from QEMU's)"
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
