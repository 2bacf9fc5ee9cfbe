#!/usr/bin/env bash
# One qcow2 image's life with qemu-img/qemu-io 7.2 and qblock taking turns (issue 14): snapshot
# -c by one tool, writes by the other, snapshot -a / -d by alternating tools, an overlay written
# by one and committed by the other, a safe rebase onto a different base by each, amend (compat
# down and up, refcount_bits, lazy_refcounts) by each. A raw model follows every write (the
# same qemu-io commands applied to a raw file) and a raw copy is kept per internal snapshot.
# After every step: `qemu-img check` and `qblock check` print the same and exit 0, the image
# reads as the model through both tools (qemu-img compare and qblock compare), and every
# internal snapshot reads as its copy through both (convert -l).
# Usage: lifecycle_interleave.sh [OPS]   Environment: QBLOCK (the qblock binary), SEED (of the
# random writes, default 14), KEEP=1 (keep the scratch directory).
set -uo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
ops=${1:-60}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-lifecycle.XXXXXX")
if [[ -n ${KEEP:-} ]]; then trap 'echo "# kept $dir"' EXIT; else trap 'rm -rf "$dir"' EXIT; fi
cd "$dir" || exit 2
RANDOM=${SEED:-14}
failed=0
size=$((16 << 20))
declare -A snap_model  # snapshot name -> raw copy

fail() {
  echo "FAIL - step $step: $*"
  failed=$((failed + 1))
}

# random_ops N DISCARD: N qemu-io commands over [0, size); discards (of whole clusters, which
# then read as zeros) only if DISCARD is 1.
random_ops() {
  local n=$1 discard=$2 i off len
  for ((i = 0; i < n; i++)); do
    off=$(((RANDOM * 32768 + RANDOM) % (size / 512) * 512))
    len=$(((RANDOM % 384 + 1) * 512))
    ((off + len > size)) && len=$((size - off))
    case $((RANDOM % 5)) in
      0 | 1 | 2) echo "write -P $((RANDOM % 255 + 1)) $off $len" ;;
      3) echo "write -z $off $len" ;;
      # qcow2 drops the partial clusters of a discard (their content stays): whole clusters.
      4) if ((discard)); then
           off=$((off / 65536 * 65536)) len=$(((len + 65535) / 65536 * 65536))
           ((off + len > size)) && len=$((size - off))
           echo "discard $off $len"
         else
           echo "write -P 7 $off $len"
         fi ;;
    esac
  done
}

# write_ops TOOL IMAGE MODEL [DISCARD]: random writes into IMAGE by TOOL (qemu-io or
# "$QBLOCK io"), the same into the raw MODEL.
write_ops() {
  local tool=$1 img=$2 model=$3 discard=${4:-1}
  random_ops "$ops" "$discard" >cmds
  # shellcheck disable=SC2086
  $tool -f qcow2 "$img" <cmds >io.out 2>&1 || fail "$tool writes into $img: $(tail -n 2 io.out)"
  grep -q -i 'error\|failed' io.out && fail "$tool writes into $img: $(grep -i -m 1 'error\|failed' io.out)"
  qemu-io -f raw "$model" <cmds >/dev/null 2>&1 || fail "model writes"
}

# judge IMAGE MODEL: both checks agree and are clean; both tools read IMAGE as MODEL; for
# img.qcow2, every internal snapshot reads as its copy through both tools and both list the
# same snapshot table.
judge() {
  local img=$1 model=$2 q r name tool
  r=$(qemu-img check "$img" 2>&1) || fail "qemu-img check $img: $r"
  q=$("$QBLOCK" check "$img" 2>&1) || fail "qblock check $img: $q"
  [[ $q == "$r" ]] || fail "check outputs differ on $img: qblock '$q' vs qemu-img '$r'"
  qemu-img compare -q -F raw "$img" "$model" || fail "qemu-img reads $img unlike the model"
  "$QBLOCK" compare -q -F raw "$img" "$model" || fail "qblock reads $img unlike the model"
  [[ $img == img.qcow2 ]] || return 0  # the snapshots below are img.qcow2's
  for name in "${!snap_model[@]}"; do
    for tool in qemu-img "$QBLOCK"; do
      rm -f snap.raw
      "$tool" convert -l "snapshot.name=$name" -O raw "$img" snap.raw 2>conv.err ||
        { fail "$tool convert -l $name: $(cat conv.err)"; continue; }
      cmp -s snap.raw "${snap_model[$name]}" || fail "$tool reads snapshot $name unlike its copy"
    done
  done
  # The snapshot tables as both tools list them (names, ids, sizes; dates and clocks differ).
  r=$(qemu-img snapshot -l "$img" 2>&1 | awk 'NR > 2 { print $1, $2, $3 }')
  q=$("$QBLOCK" snapshot -l "$img" 2>&1 | awk 'NR > 2 { print $1, $2, $3 }')
  [[ $q == "$r" ]] || fail "snapshot lists differ on $img: qblock '$q' vs qemu-img '$r'"
}

# step DESCRIPTION: names the step that follows.
step() {
  step=$1
  echo "# $step"
}

# run TOOL ARGS...: runs one tool's subcommand, which must succeed.
run() {
  local out
  out=$("$@" 2>&1) || fail "$*: exit $?: $out"
}

# snap_create TOOL NAME / snap_apply TOOL NAME / snap_delete TOOL NAME, on img.qcow2.
snap_create() {
  run "$1" snapshot -c "$2" img.qcow2
  cp model.raw "snap-$2.raw"
  snap_model[$2]=snap-$2.raw
}
snap_apply() {
  run "$1" snapshot -a "$2" img.qcow2
  cp "${snap_model[$2]}" model.raw
}
snap_delete() {
  run "$1" snapshot -d "$2" img.qcow2
  unset "snap_model[$2]"
}

step "create (qemu-img), writes (qblock io)"
qemu-img create -q -f qcow2 img.qcow2 $size
truncate -s $size model.raw
write_ops "$QBLOCK io" img.qcow2 model.raw
judge img.qcow2 model.raw

step "snapshot -c s1 (qemu-img), writes (qblock io)"
snap_create qemu-img s1
write_ops "$QBLOCK io" img.qcow2 model.raw
judge img.qcow2 model.raw

step "snapshot -c s2 (qblock), writes (qemu-io)"
snap_create "$QBLOCK" s2
write_ops qemu-io img.qcow2 model.raw
judge img.qcow2 model.raw

step "snapshot -c s3 (qemu-img), snapshot -a s1 (qblock), writes (qemu-io)"
snap_create qemu-img s3
snap_apply "$QBLOCK" s1
judge img.qcow2 model.raw
write_ops qemu-io img.qcow2 model.raw
judge img.qcow2 model.raw

step "snapshot -a s2 (qemu-img), writes (qblock io), snapshot -d s1 (qblock)"
snap_apply qemu-img s2
write_ops "$QBLOCK io" img.qcow2 model.raw
snap_delete "$QBLOCK" s1
judge img.qcow2 model.raw

step "snapshot -d s3 (qemu-img), snapshot -c s4 (qblock), writes (qemu-io)"
snap_delete qemu-img s3
snap_create "$QBLOCK" s4
write_ops qemu-io img.qcow2 model.raw
judge img.qcow2 model.raw

step "overlay (qblock create), writes (qemu-io), commit (qblock)"
run "$QBLOCK" create -q -f qcow2 -b img.qcow2 -F qcow2 ov.qcow2
cp model.raw ov-model.raw
write_ops qemu-io ov.qcow2 ov-model.raw 0
judge ov.qcow2 ov-model.raw
run "$QBLOCK" commit ov.qcow2
cp ov-model.raw model.raw
judge img.qcow2 model.raw
judge ov.qcow2 ov-model.raw

step "overlay (qemu-img create), writes (qblock io), commit -d (qemu-img)"
qemu-img create -q -f qcow2 -b img.qcow2 -F qcow2 ov2.qcow2
cp model.raw ov2-model.raw
write_ops "$QBLOCK io" ov2.qcow2 ov2-model.raw 0
judge ov2.qcow2 ov2-model.raw
run qemu-img commit -d ov2.qcow2
cp ov2-model.raw model.raw
judge img.qcow2 model.raw

step "a second base (qemu-img convert, qblock io writes); safe rebase onto it (qblock)"
qemu-img convert -O qcow2 img.qcow2 other.qcow2
cp model.raw other-model.raw
write_ops "$QBLOCK io" other.qcow2 other-model.raw
qemu-img create -q -f qcow2 -b img.qcow2 -F qcow2 top.qcow2
cp model.raw top-model.raw
write_ops qemu-io top.qcow2 top-model.raw 0
run "$QBLOCK" rebase -b other.qcow2 -F qcow2 top.qcow2
judge top.qcow2 top-model.raw
judge other.qcow2 other-model.raw

step "writes into the rebased top (qblock io); safe rebase back (qemu-img); commit (qemu-img)"
write_ops "$QBLOCK io" top.qcow2 top-model.raw 0
run qemu-img rebase -b img.qcow2 -F qcow2 top.qcow2
judge top.qcow2 top-model.raw
run qemu-img commit top.qcow2
cp top-model.raw model.raw
judge img.qcow2 model.raw

step "amend compat=0.10 (qblock), writes (qemu-io), snapshot -c s5 (qemu-img)"
run "$QBLOCK" amend -o compat=0.10 img.qcow2
judge img.qcow2 model.raw
write_ops qemu-io img.qcow2 model.raw
snap_create qemu-img s5
judge img.qcow2 model.raw

step "amend compat=1.1 (qemu-img), writes (qblock io), snapshot -a s4 (qblock)"
run qemu-img amend -o compat=1.1 img.qcow2
write_ops "$QBLOCK io" img.qcow2 model.raw
judge img.qcow2 model.raw
snap_apply "$QBLOCK" s4
judge img.qcow2 model.raw

step "amend refcount_bits=4 (qblock), writes (qemu-io), snapshot -d s2 (qemu-img)"
run "$QBLOCK" amend -o refcount_bits=4 img.qcow2
judge img.qcow2 model.raw
write_ops qemu-io img.qcow2 model.raw
snap_delete qemu-img s2
judge img.qcow2 model.raw

step "amend lazy_refcounts=on,refcount_bits=16 (qemu-img), writes (qblock io), snapshot -a s5 (qblock)"
run qemu-img amend -o lazy_refcounts=on,refcount_bits=16 img.qcow2
write_ops "$QBLOCK io" img.qcow2 model.raw
judge img.qcow2 model.raw
snap_apply "$QBLOCK" s5
snap_delete "$QBLOCK" s4
judge img.qcow2 model.raw

step "amend lazy_refcounts=off (qblock), snapshot -c s6 (qblock), snapshot -a s6 (qemu-img)"
run "$QBLOCK" amend -o lazy_refcounts=off img.qcow2
snap_create "$QBLOCK" s6
write_ops qemu-io img.qcow2 model.raw
snap_apply qemu-img s6
judge img.qcow2 model.raw

if ((failed)); then
  echo "# $failed failure(s)"
  exit 1
fi
echo "# all steps passed"
