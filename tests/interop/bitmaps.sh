#!/usr/bin/env bash
# Persistent dirty bitmaps between qblock and QEMU 7.2, judged against a model of the writes:
#  1. qblock writes (random writes, write-zeroes, discards through `qblock io`) into an image
#     with two enabled bitmaps of different granularities and one disabled: qemu-img check
#     and info pass, and qemu-nbd -B / nbdinfo --map show exactly the model's dirty granules.
#  2. The reverse: QEMU writes (qemu-io) into an image whose bitmaps qblock has kept; qblock
#     nbd -B shows the model's granules, as qemu-nbd does on the same image.
#  3. An unclean close (qblock io ... abort) leaves the bitmaps in use: qemu-img info shows
#     them "in-use", check passes, and the next writer keeps them as they are.
# Usage: bitmaps.sh [OPS]     Environment: QBLOCK (the qblock binary).
set -euo pipefail
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
ops=${1:-300}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-bitmaps.XXXXXX")
server=
cleanup() {
  [[ -n $server ]] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
failed=0
RANDOM=7
size=$((64 * 1024 * 1024))

# Random qemu-io commands over the disk, and a model line per command ("OFFSET LEN").
random_ops() {
  local n=$1 i off len
  for ((i = 0; i < n; i++)); do
    off=$(( (RANDOM * 32768 + RANDOM) % (size / 512) * 512 ))
    len=$(( (RANDOM % 512 + 1) * 512 ))
    (( off + len > size )) && len=$((size - off))
    case $((RANDOM % 5)) in
      0|1|2) echo "write -P $((RANDOM % 255 + 1)) $off $len" ;;
      3) echo "write -z $off $len" ;;
      4) echo "discard $off $len" ;;
    esac
  done
}

# model OPSFILE GRANULARITY: the dirty extents nbdinfo --map prints for those writes. Writes,
# write-zeroes and discards (qemu-io and qblock io both open with discard=unmap) dirty every
# granule the request touches, as QEMU's request layer marks them, whatever the driver does.
model() {
  python3 - "$1" "$2" "$size" <<'PY'
import sys
ops, g, size = open(sys.argv[1]).read().split('\n'), int(sys.argv[2]), int(sys.argv[3])
dirty = set()
for line in ops:
    w = line.split()
    if not w:
        continue
    off, ln = int(w[-2]), int(w[-1])
    dirty.update(range(off // g, (off + ln + g - 1) // g))
runs, pos, n = [], 0, (size + g - 1) // g
while pos < n:
    d = pos in dirty
    end = pos
    while end < n and (end in dirty) == d:
        end += 1
    runs.append((pos * g, min(end * g, size) - pos * g, d))
    pos = end
for s, l, d in runs:
    print('%d %d %d %s' % (s, l, 1 if d else 0, 'dirty' if d else 'clean'))
PY
}

# nbd_map TOOL IMAGE BITMAP: the bitmap as a server started by TOOL (qemu-nbd or qblock nbd)
# exports it, read by nbdinfo.
nbd_map() {
  local tool=$1 image=$2 bitmap=$3 sock=$dir/nbd.sock
  rm -f "$sock"
  if [[ $tool == qemu ]]; then
    qemu-nbd -r -t -B "$bitmap" -k "$sock" -f qcow2 "$image" &
  else
    "$QBLOCK" nbd -r -t -B "$bitmap" -k "$sock" -f qcow2 "$image" &
  fi
  server=$!
  for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
  nbdinfo --map="qemu:dirty-bitmap:$bitmap" "nbd+unix:///?socket=$sock" |
    sed 's/^ *//; s/  */ /g'
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
}

expect() {  # expect WHAT EXPECTED ACTUAL
  if [[ "$2" == "$3" ]]; then
    echo "ok: $1"
  else
    echo "FAIL: $1"
    diff <(echo "$2") <(echo "$3") | head -20
    failed=1
  fi
}

check_clean() {  # check_clean WHAT IMAGE
  if qemu-img check -q "$2"; then echo "ok: $1: qemu-img check"; else echo "FAIL: $1: check"; failed=1; fi
}

# ---- 1. qblock writes, QEMU reads the bitmaps ----
img=$dir/a.qcow2
qemu-img create -q -f qcow2 "$img" 64M
qemu-img bitmap --add "$img" b0
qemu-img bitmap --add -g 512k "$img" b1
qemu-img bitmap --add --disable "$img" off
random_ops "$ops" > "$dir/ops1"
# In several sessions, each one storing the bitmaps at close.
split -n l/3 "$dir/ops1" "$dir/part."
for p in "$dir"/part.*; do
  args=()
  while read -r line; do args+=(-c "$line"); done < "$p"
  "$QBLOCK" io "${args[@]}" "$img" > /dev/null
done
check_clean "qblock writes" "$img"
info=$(qemu-img info "$img")
expect "qblock writes: info lists three bitmaps, none in use" "3 0" \
  "$(grep -c 'name: ' <<< "$info") $(grep -c 'in-use' <<< "$info" || true)"
expect "qblock writes: b0 (64k) through qemu-nbd" "$(model "$dir/ops1" 65536)" "$(nbd_map qemu "$img" b0)"
expect "qblock writes: b1 (512k) through qemu-nbd" "$(model "$dir/ops1" 524288)" "$(nbd_map qemu "$img" b1)"
expect "qblock writes: disabled bitmap clean" "$(model /dev/null 65536)" "$(nbd_map qemu "$img" off)"
expect "qblock nbd -B serves the same b1" "$(nbd_map qemu "$img" b1)" "$(nbd_map qblock "$img" b1)"

# ---- 2. QEMU writes, qblock reads the bitmaps ----
qemu-img bitmap --clear "$img" b0
qemu-img bitmap --clear "$img" b1
random_ops "$ops" > "$dir/ops2"
args=()
while read -r line; do args+=(-c "$line"); done < "$dir/ops2"
qemu-io "${args[@]}" "$img" > /dev/null
expect "qemu writes: b0 through qblock nbd" "$(model "$dir/ops2" 65536)" "$(nbd_map qblock "$img" b0)"
expect "qemu writes: b1 through qblock nbd" "$(model "$dir/ops2" 524288)" "$(nbd_map qblock "$img" b1)"
expect "qemu writes: qblock nbd = qemu-nbd" "$(nbd_map qemu "$img" b0)" "$(nbd_map qblock "$img" b0)"
check_clean "after qblock's read-only opens" "$img"

# ---- 3. unclean close ----
"$QBLOCK" io -c 'write 0 64k' -c abort "$img" > /dev/null 2>&1 || true
info=$(qemu-img info "$img")
expect "unclean close: every enabled and disabled bitmap in use" "3" "$(grep -c 'in-use' <<< "$info" || true)"
qemu-img check -q "$img" 2>/dev/null || qemu-img check -q -r leaks "$img" > /dev/null 2>&1 || true
check_clean "unclean close (leaks repaired)" "$img"
"$QBLOCK" io -c 'write 1M 64k' "$img" > /dev/null
qemu-img bitmap --remove "$img" b1
info=$(qemu-img info "$img")
expect "inconsistent bitmaps kept by the next writer, removable" "2 2" \
  "$(grep -c 'name: ' <<< "$info") $(grep -c 'in-use' <<< "$info" || true)"
check_clean "after removing an inconsistent bitmap" "$img"

exit $failed
