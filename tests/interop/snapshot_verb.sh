#!/usr/bin/env bash
# `qblock snapshot` against QEMU: a seeded random sequence of writes (qemu-io, qblock io,
# compressed ones too) and snapshot create/apply/delete, each operation done by qblock or by
# qemu-img at random, on images with and without a backing file. After every operation
# qemu-img check is clean, qemu-img and qblock list the same snapshots and show the same
# info, and every snapshot, applied by the other tool on a copy, reads what the image read
# when it was taken (qemu-img compare against a raw copy made then).
# Usage: snapshot_verb.sh [STEPS] [SEED]      Environment: QBLOCK (the qblock binary).
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
steps=${1:-60}
RANDOM=${2:-1}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-snapshot-verb.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
failed=0 passed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }

# verify IMAGE: the checks after each operation (see the header).
verify() {
  local img=$1 what=$2
  if ! qemu-img check -q "$img" >/dev/null 2>&1; then
    fail "$what: qemu-img check"; qemu-img check "$img" 2>&1 | head -5; return
  fi
  if [[ $("$QBLOCK" snapshot -l "$img" 2>&1) != "$(qemu-img snapshot -l "$img" 2>&1)" ]]; then
    fail "$what: snapshot -l differs"; return
  fi
  if [[ $("$QBLOCK" info "$img" 2>&1 | grep -v '^disk size') != \
        "$(qemu-img info "$img" 2>&1 | grep -v '^disk size')" ]]; then
    fail "$what: info differs"; return
  fi
  local id
  for id in $(qemu-img snapshot -l "$img" | awk 'NR > 2 { print $1 }'); do
    cp "$img" probe.qcow2
    # The tool that did not take the snapshot applies it, as far as we know who took it.
    if (( RANDOM % 2 )); then
      qemu-img snapshot -a "$id" probe.qcow2 || { fail "$what: qemu-img -a $id"; return; }
    else
      "$QBLOCK" snapshot -a "$id" probe.qcow2 || { fail "$what: qblock -a $id"; return; }
    fi
    if ! qemu-img compare -q probe.qcow2 "ref-$(name_of "$img" "$id").raw"; then
      fail "$what: snapshot $id reads differently after apply"; return
    fi
    qemu-img check -q probe.qcow2 >/dev/null 2>&1 || { fail "$what: check after -a $id"; return; }
  done
  passed=$((passed + 1))
}
name_of() { qemu-img snapshot -l "$1" | awk -v id="$2" '$1 == id { print $2 }'; }

tool() { if (( RANDOM % 2 )); then echo "$QBLOCK"; else echo qemu-img; fi; }

run_image() {
  local img=$1 size=$2
  local n=0 step op off len t names=()
  for ((step = 0; step < steps; step++)); do
    op=$((RANDOM % 10))
    off=$(( (RANDOM % (size / 65536)) * 65536 + (RANDOM % 4) * 512 ))
    len=$(( (RANDOM % 8 + 1) * 4096 ))
    (( off + len > size )) && off=$((size - len))
    if (( op < 4 )); then
      if (( RANDOM % 2 )); then
        qemu-io -c "write -P $((RANDOM % 255 + 1)) $off $len" "$img" >/dev/null
      else
        "$QBLOCK" io -c "write -P $((RANDOM % 255 + 1)) $off $len" "$img" >/dev/null
      fi
    elif (( op == 4 )); then
      off=$(( off / 65536 * 65536 )); (( off + 65536 > size )) && off=$((size - 65536))
      qemu-io -c "write -c -P $((RANDOM % 255 + 1)) $off 64k" "$img" >/dev/null
    elif (( op < 7 )); then
      n=$((n + 1)); t=$(tool)
      $t snapshot -c "s$n" "$img" || fail "$t -c s$n"
      qemu-img convert -O raw "$img" "ref-s$n.raw"
      names+=("s$n")
      verify "$img" "after $t -c s$n"
    elif (( op < 9 )) && (( ${#names[@]} )); then
      local s=${names[RANDOM % ${#names[@]}]}; t=$(tool)
      $t snapshot -a "$s" "$img" || fail "$t -a $s"
      qemu-img compare -q "$img" "ref-$s.raw" || fail "$t -a $s: the image reads differently"
      verify "$img" "after $t -a $s"
    elif (( ${#names[@]} )); then
      local i=$((RANDOM % ${#names[@]})); t=$(tool)
      $t snapshot -d "${names[i]}" "$img" || fail "$t -d ${names[i]}"
      names=("${names[@]:0:i}" "${names[@]:i+1}")
      verify "$img" "after $t -d"
    fi
  done
  for s in "${names[@]}"; do
    "$QBLOCK" snapshot -d "$s" "$img" || fail "final qblock -d $s"
  done
  verify "$img" "after deleting every snapshot"
  [[ -z $(qemu-img snapshot -l "$img") ]] || fail "snapshots left"
}

qemu-img create -q -f qcow2 plain.qcow2 32M
run_image plain.qcow2 $((32 << 20))
rm -f ref-*.raw
qemu-img create -q -f qcow2 base.qcow2 32M
qemu-io -c 'write -P 77 0 16M' base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
run_image top.qcow2 $((32 << 20))
qemu-img create -q -f qcow2 -o cluster_size=4k small.qcow2 8M
run_image small.qcow2 $((8 << 20))
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
