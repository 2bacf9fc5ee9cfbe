#!/usr/bin/env bash
# convert -c interoperability: random source images (qcow2 with scattered writes, zeroes and
# compressed clusters; raw with text, noise and zero runs) converted by qblock to compressed
# qcow2 with zlib and zstd, cluster sizes 512 to 2M, in order and with -W, random -m. Each
# target must pass qemu-img check, equal its source (qemu-img compare), be within 1% of the
# size of qemu-img's image from the same source or smaller (without -W: byte for byte
# qemu-img's layout), and read back through qblock into raw equal to the source, as must
# qemu-img's compressed image. A run with
# several sources whose sizes are not cluster multiples is judged against their concatenation.
# Usage: convert_compressed.sh [ROUNDS]     Environment: QBLOCK (the qblock binary).
set -eu
QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
rounds=${1:-4}
dir=$(mktemp -d "${TMPDIR:-/var/tmp}/qblock-convert-c.XXXXXX")
trap 'rm -rf "$dir"' EXIT
failed=0
RANDOM=14
noise() { head -c "$1" /dev/zero | openssl enc -aes-128-ctr -K "$(printf '%032x' "$2")" \
  -iv 00000000000000000000000000000000 2>/dev/null; }
text() { local i; for ((i = 0; i < $1; i++)); do printf 'record %07d value %d\n' $i $((i * 7 % 1000)); done; }
verdict() {  # name, result
  echo "$2: $1"
  [[ $2 == ok ]] || failed=$((failed + 1))
}
for ((round = 0; round < rounds; round++)); do
  for ctype in zlib zstd; do
    for cluster in 512 4096 65536 2097152; do
      size=$(( (RANDOM % 24 + 8) * 1048576 + RANDOM % 3 * 4096 ))
      # A raw source: text, noise and zero runs at random places.
      rm -f "$dir/s.raw"; truncate -s $size "$dir/s.raw"
      for ((k = 0; k < 12; k++)); do
        off=$(( (RANDOM * 32768 + RANDOM) % size ))
        case $((RANDOM % 3)) in
          0) text $((RANDOM % 20000)) | head -c $((size - off)) |
               dd of="$dir/s.raw" bs=4k seek=$off oflag=seek_bytes conv=notrunc status=none ;;
          1) noise $(( (RANDOM % 256 + 1) * 1024 )) $RANDOM | head -c $((size - off)) |
               dd of="$dir/s.raw" bs=4k seek=$off oflag=seek_bytes conv=notrunc status=none ;;
          2) head -c $(( (RANDOM % 512 + 1) * 1024 )) /dev/zero | head -c $((size - off)) |
               dd of="$dir/s.raw" bs=4k seek=$off oflag=seek_bytes conv=notrunc status=none ;;
        esac
      done
      # A qcow2 source from it with scattered extra writes.
      qemu-img convert -O qcow2 "$dir/s.raw" "$dir/s.qcow2"
      cmds=()
      for ((k = 0; k < 20; k++)); do
        off=$(( (RANDOM * 32768 + RANDOM) % (size / 512) * 512 ))
        len=$(( (RANDOM % 256 + 1) * 512 )); (( off + len > size )) && len=$((size - off))
        case $((RANDOM % 3)) in
          0) cmds+=(-c "write -P $((RANDOM % 255)) $off $len") ;;
          1) cmds+=(-c "write -z $off $len") ;;
          2) cmds+=(-c "discard $off $len") ;;
        esac
      done
      qemu-io "${cmds[@]}" "$dir/s.qcow2" >/dev/null
      for src in s.raw s.qcow2; do
        m=$((RANDOM % 16 + 1)) w=""
        (( RANDOM % 2 )) && w=-W
        name="$ctype cluster=$cluster size=$size $src -m $m $w"
        opts="cluster_size=$cluster,compression_type=$ctype"
        rm -f "$dir/qb.qcow2" "$dir/qe.qcow2" "$dir/back.raw"
        if ! "$QBLOCK" convert -c -m $m $w -O qcow2 -o $opts "$dir/$src" "$dir/qb.qcow2"; then
          verdict "$name" "qblock convert failed"; continue
        fi
        qemu-img convert -c -m $m $w -O qcow2 -o $opts "$dir/$src" "$dir/qe.qcow2"
        qb=$(stat -c %s "$dir/qb.qcow2") qe=$(stat -c %s "$dir/qe.qcow2")
        v=ok
        if ! qemu-img check -q "$dir/qb.qcow2"; then v="qemu-img check failed"
        elif ! qemu-img compare -q "$dir/$src" "$dir/qb.qcow2"; then v="differs from the source"
        elif (( qb > qe + qe / 100 + cluster )); then v="size $qb, qemu-img's $qe"
        # In order (no -W) the qcow2 driver allocates compressed writes in the order they
        # were issued, whenever their compression finishes, so the layout is qemu-img's.
        elif [[ -z $w ]] && ! cmp -s -n "$qb" "$dir/qb.qcow2" "$dir/qe.qcow2"; then
          v="layout differs from qemu-img's"
        elif ! "$QBLOCK" convert -O raw "$dir/qe.qcow2" "$dir/back.raw" ||
             ! qemu-img compare -q -f raw -F raw "$dir/back.raw" "$dir/s.raw" &&
             [[ $src == s.raw ]]; then v="qemu-img's image read back wrong"
        fi
        verdict "$name (size $qb, qemu-img $qe)" "$v"
      done
    done
  done
done
# Several sources, sizes not cluster multiples (qemu-img 7.2 gets these wrong).
text 3000 | head -c 100000 > "$dir/p1.raw"; truncate -s 100000 "$dir/p1.raw"
noise 70000 1 > "$dir/p2.raw"
text 9000 | head -c 300001 > "$dir/p3.raw"
cat "$dir/p1.raw" "$dir/p2.raw" "$dir/p3.raw" > "$dir/all.raw"
for ctype in zlib zstd; do
  for cluster in 512 65536; do
    rm -f "$dir/qb.qcow2"
    "$QBLOCK" convert -c -O qcow2 -o cluster_size=$cluster,compression_type=$ctype \
      "$dir/p1.raw" "$dir/p2.raw" "$dir/p3.raw" "$dir/qb.qcow2"
    v=ok
    if ! qemu-img check -q "$dir/qb.qcow2"; then v="qemu-img check failed"
    elif ! qemu-img compare -q -f raw "$dir/all.raw" "$dir/qb.qcow2"; then v="differs"; fi
    verdict "$ctype cluster=$cluster three sources" "$v"
  done
done
[[ $failed -eq 0 ]]
