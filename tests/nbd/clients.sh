#!/usr/bin/env bash
# Real NBD clients (nbdinfo, nbdcopy, qemu-io, qemu-img, fio's nbd engine) against the server
# in $NBD_SERVER (default qemu-nbd; e.g. NBD_SERVER="build/debug/bin/qblock nbd").
# Every server runs on a Unix socket in a scratch directory, started with -t -e 8 --fork
# --pid-file; after SIGTERM it must exit 0 and remove its socket, and qemu-img check must
# find its image clean. One line per case: "ok - NAME" or "FAIL - NAME: why".
#
# Environment: NBD_SERVER, NBD_SKIP (blank-separated case names to skip), NBD_KEEP (keep
# the scratch directory), NBD_DEPTH_OPT (option that enables the qemu:allocation-depth
# context; default -A, as for qemu-nbd).
# shellcheck disable=SC2317  # the case functions are called through run_case
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

for tool in qemu-img qemu-io nbdinfo nbdcopy fio python3 cmp; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
read -r -a DEPTH_OPT <<<"${NBD_DEPTH_OPT:--A}"
SIZE=$((64 << 20))
M=$((1 << 20))
echo "# server: $NBD_SERVER; scratch $WORK"
T0=$SECONDS

qio() { qemu-io -f raw "$@"; }
# qio_ok DESC URI [-r] CMDS...: qemu-io must exit 0 and report no failure.
qio_ok() {
  local desc=$1 u=$2
  shift 2
  local args=() c
  [[ ${1:-} == -r ]] && { args+=(-r); shift; }
  for c in "$@"; do args+=(-c "$c"); done
  must "$desc" qio "$u" "${args[@]}" || return 1
  if grep -qiE 'fail|error|mismatch' <<<"$OUT"; then
    why "$desc: $(grep -iE -m1 'fail|error|mismatch' <<<"$OUT")"
    return 1
  fi
}

# --- the main writable export ----------------------------------------------------------------

c_start_main() {
  must "qemu-img create" qemu-img create -q -f qcow2 -o cluster_size=65536 "$WORK/main.qcow2" 64M || return 1
  start_server main -t -e 8 -x exp -D "qblock test export" -f qcow2 \
    --cache=writeback --aio=threads --discard=unmap --detect-zeroes=off "$WORK/main.qcow2"
}

c_nbdinfo_list() {
  must "nbdinfo --list" nbdinfo --list --json "$(uri main)" || return 1
  pycheck '
ex = d.get("exports", [])
names = [e.get("export-name") for e in ex]
if "exp" not in names:
    fail(f"export list {names} lacks \"exp\"")
desc = ex[names.index("exp")].get("description")
if desc != "qblock test export":
    fail(f"description {desc!r}, expected \"qblock test export\"")
' <<<"$OUT"
}

c_nbdinfo_export() {
  must "nbdinfo" nbdinfo --json "$(uri main exp)" || return 1
  pycheck '
e = d["exports"][0]
size = e.get("export-size")
if size != 64 << 20:
    fail(f"export-size {size}, expected 67108864")
for k in ("can_flush", "can_trim", "can_zero", "can_fua", "can_df", "can_fast_zero"):
    if e.get(k) is not True:
        fail(f"{k} is {e.get(k)}, expected true")
if e.get("is_read_only") is not False:
    fail("is_read_only is not false on a writable export")
if not d.get("structured"):
    fail("structured replies not negotiated")
' <<<"$OUT" || return 1
  must "nbdinfo --size" nbdinfo --size "$(uri main exp)" || return 1
  [[ $OUT == "$SIZE" ]] || { why "nbdinfo --size says $OUT"; return 1; }
}

c_nbdcopy_to_export() {
  head -c 16M /dev/urandom >"$WORK/rand.bin" || { why "cannot make random data"; return 1; }
  must "nbdcopy file -> export" nbdcopy "$WORK/rand.bin" "$(uri main exp)"
}

c_nbdcopy_from_export() {
  must "nbdcopy export -> file" nbdcopy "$(uri main exp)" "$WORK/out.bin" || return 1
  local n
  n=$(stat -c %s "$WORK/out.bin")
  [[ $n == "$SIZE" ]] || { why "copied file has $n bytes, expected $SIZE"; return 1; }
  must "first 16 MiB equal the source" cmp -n 16M "$WORK/rand.bin" "$WORK/out.bin" || return 1
  must "the rest reads as zeroes" cmp -i 16M:0 -n 48M "$WORK/out.bin" /dev/zero
}

c_qemu_io_rw() {
  qio_ok "qemu-io write/read" "$(uri main exp)" \
    "write -P 0xab $((20 * M)) 1M" "read -P 0xab $((20 * M)) 1M" \
    "write -f -P 0xac $((21 * M)) 64k" "read -P 0xac $((21 * M)) 64k" \
    "write -P 0xa1 $((21 * M + 65536 + 512)) 1000" "read -P 0xa1 $((21 * M + 65536 + 512)) 1000" || return 1
  # A mismatching pattern must be noticed (the check itself works).
  must_fail "read with a wrong pattern" qio "$(uri main exp)" -c "read -P 0x11 $((20 * M)) 4k"
}

c_qemu_io_zeroes() {
  qio_ok "qemu-io write zeroes" "$(uri main exp)" \
    "write -P 0xcd $((22 * M)) 1M" "write -z $((22 * M)) 512k" \
    "read -P 0 $((22 * M)) 512k" "read -P 0xcd $((22 * M + 524288)) 512k" \
    "write -P 0xce $((23 * M)) 1M" "write -z -u $((23 * M)) 1M" "read -P 0 $((23 * M)) 1M"
}

c_qemu_io_discard() {
  qio_ok "qemu-io discard" "$(uri main exp)" \
    "write -P 0xef $((24 * M)) 1M" "discard $((24 * M)) 1M" "read -P 0 $((24 * M)) 1M" \
    "flush" || return 1
  # --discard=unmap on qcow2 without a backing file: the clusters are gone.
  must "nbdinfo --map" nbdinfo --map --json "$(uri main exp)" || return 1
  printf '%s' "$OUT" >"$WORK/discard.map"
  check_map "$WORK/discard.map" 64M "24M 1M 3"
}

c_qemu_io_flush() {
  qio_ok "qemu-io flush" "$(uri main exp)" "write -P 0x5e $((25 * M)) 64k" "flush" \
    "aio_write -P 0x5f $((25 * M + 65536)) 64k" "aio_flush" "flush" \
    "read -P 0x5e $((25 * M)) 64k" "read -P 0x5f $((25 * M + 65536)) 64k"
}

# The same writes on a local raw file: the reference for compare/convert.
make_reference() {
  rm -f "$WORK/ref.raw"
  truncate -s 64M "$WORK/ref.raw"
  dd if="$WORK/rand.bin" of="$WORK/ref.raw" conv=notrunc status=none
  qemu-io -f raw "$WORK/ref.raw" \
    -c "write -P 0xab $((20 * M)) 1M" -c "write -P 0xac $((21 * M)) 64k" \
    -c "write -P 0xa1 $((21 * M + 65536 + 512)) 1000" \
    -c "write -P 0xcd $((22 * M + 524288)) 512k" \
    -c "write -P 0x5e $((25 * M)) 64k" -c "write -P 0x5f $((25 * M + 65536)) 64k" >/dev/null
}

c_qemu_img_info() {
  must "qemu-img info" qemu-img info -f raw "$(uri main exp)" || return 1
  grep -q "virtual size: 64 MiB (67108864 bytes)" <<<"$OUT" ||
    { why "qemu-img info: $(grep -m1 'virtual size' <<<"$OUT")"; return 1; }
}

c_qemu_img_compare() {
  make_reference || { why "building the reference failed"; return 1; }
  must "qemu-img compare reference vs export" \
    qemu-img compare -f raw -F raw "$WORK/ref.raw" "$(uri main exp)" || return 1
  cp "$WORK/ref.raw" "$WORK/ref-bad.raw"
  printf 'x' | dd of="$WORK/ref-bad.raw" bs=1 seek=$((30 * M + 7)) conv=notrunc status=none
  must_fail "qemu-img compare against a different reference" \
    qemu-img compare -f raw -F raw "$WORK/ref-bad.raw" "$(uri main exp)" || return 1
  local at
  at=$(sed -n 's/.*Content mismatch at offset \([0-9]*\).*/\1/p' <<<"$OUT")
  if [[ -z $at ]] || ((at > 30 * M + 7 || at <= 30 * M - 65536)); then
    why "compare did not point at the changed byte $((30 * M + 7)): $OUT"
    return 1
  fi
  rm -f "$WORK/ref-bad.raw"
}

c_qemu_img_convert_from() {
  must "qemu-img convert export -> qcow2" \
    qemu-img convert -f raw -O qcow2 "$(uri main exp)" "$WORK/conv.qcow2" || return 1
  must "converted image equals the reference" \
    qemu-img compare -f raw -F qcow2 "$WORK/ref.raw" "$WORK/conv.qcow2"
}

c_qemu_img_convert_to() {
  must "qemu-img create" qemu-img create -q -f qcow2 "$WORK/dst.qcow2" 64M || return 1
  start_server dst -t -e 8 -f qcow2 "$WORK/dst.qcow2" || return 1
  must "qemu-img convert reference -> export" \
    qemu-img convert -n -f raw -O raw "$WORK/ref.raw" "$(uri dst)" || return 1
  must "export equals the reference" qemu-img compare -f raw -F raw "$WORK/ref.raw" "$(uri dst)" || return 1
  stop_server dst || return 1
  check_clean "$WORK/dst.qcow2" || return 1
  must "image behind the export equals the reference" \
    qemu-img compare -f raw -F qcow2 "$WORK/ref.raw" "$WORK/dst.qcow2"
}

# fio drops state files into its working directory; must runs this in a subshell.
fio_in_work() { cd "$WORK" && fio "$@"; }

fio_ok() {
  local desc=$1
  shift
  must "$desc" fio_in_work --output-format=normal "$@" || return 1
  if ! grep -q "err= 0" <<<"$OUT" || grep -qE "err= *[1-9]|verify: bad|bad magic|crc32c: verify failed" <<<"$OUT"; then
    why "$desc: $(grep -m1 -E 'err=|verify' <<<"$OUT")"
    return 1
  fi
}

c_fio_randwrite_verify() {
  fio_ok "fio randwrite+verify" --name=randwrite --ioengine=nbd --uri="$(uri main exp)" \
    --rw=randwrite --bs=4k --iodepth=16 --size=32M --offset=32M --verify=crc32c \
    --do_verify=1 --verify_fatal=1 --verify_state_save=0
}

c_fio_randread() {
  fio_ok "fio randread" --name=randread --ioengine=nbd --uri="$(uri main exp)" \
    --rw=randread --bs=4k --iodepth=16 --size=32M --offset=32M --numjobs=4 --group_reporting
}

c_stop_main() {
  # What the export holds now must be in the image after SIGTERM.
  must "nbdcopy snapshot" nbdcopy "$(uri main exp)" "$WORK/final.raw" || return 1
  must "compare snapshot" qemu-img compare -f raw -F raw "$WORK/final.raw" "$(uri main exp)" || return 1
  stop_server main || return 1
  check_clean "$WORK/main.qcow2" || return 1
  # A clean close gives back the space preallocated ahead of the data (qblock's preallocate
  # filter): the file ends where qemu-img check says the image ends.
  local end size
  end=$(qemu-img check --output=json "$WORK/main.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["image-end-offset"])')
  size=$(stat -c %s "$WORK/main.qcow2")
  if ((size > end)); then
    why "file is $size bytes after SIGTERM, image ends at $end: preallocation not trimmed"
    return 1
  fi
  must "image equals the last state of the export" \
    qemu-img compare -f raw -F qcow2 "$WORK/final.raw" "$WORK/main.qcow2"
}

# --- read-only export ------------------------------------------------------------------------

c_readonly() {
  start_server ro -t -e 8 -r -x ro -f qcow2 "$WORK/main.qcow2" || return 1
  must "nbdinfo" nbdinfo --json "$(uri ro ro)" || return 1
  pycheck '
e = d["exports"][0]
ro, size = e.get("is_read_only"), e.get("export-size")
if ro is not True:
    fail(f"is_read_only is {ro} with -r")
if size != 64 << 20:
    fail(f"export-size {size}")
' <<<"$OUT" || return 1
  # qemu-io refuses to open a read-only export read-write ("Permission denied") or, with
  # -r, to write ("read-only"); against a server that does not flag the export read-only
  # the write reaches the server and must fail there ("Operation not permitted").
  local how
  for how in rw r; do
    local args=(-f raw)
    [[ $how == r ]] && args+=(-r)
    must_fail "qemu-io write on the read-only export" \
      qemu-io "${args[@]}" "$(uri ro ro)" -c "write -P 0x99 $((20 * M)) 64k" || return 1
    grep -qiE "Operation not permitted|Permission denied|read-only|read only" <<<"$OUT" ||
      { why "qemu-io write failed with an unexpected message: $(tail -n1 <<<"$OUT")"; return 1; }
  done
  must_fail "nbdcopy into the read-only export" nbdcopy "$WORK/rand.bin" "$(uri ro ro)" || return 1
  qio_ok "qemu-io -r read" "$(uri ro ro)" -r "read -P 0xab $((20 * M)) 1M" || return 1
  must "export still equals the snapshot" \
    qemu-img compare -f raw -F raw "$WORK/final.raw" "$(uri ro ro)" || return 1
  stop_server ro || return 1
  check_clean "$WORK/main.qcow2" || return 1
  must "image unchanged" qemu-img compare -f raw -F qcow2 "$WORK/final.raw" "$WORK/main.qcow2"
}

# --- sparse image: map and hole-preserving copies ---------------------------------------------

c_sparse_map() {
  local img=$WORK/sparse.qcow2
  must "qemu-img create" qemu-img create -q -f qcow2 -o cluster_size=65536 "$img" 64M || return 1
  must "qemu-io (data at known offsets)" qemu-io -f qcow2 "$img" \
    -c "write -P 0x11 0 1M" -c "write -P 0x22 10M 64k" -c "write -P 0x33 40M 2M" \
    -c "write -P 0x44 $((63 * M - 65536)) 64k" -c "write -z 50M 1M" || return 1
  start_server sparse -t -e 8 -r -x sparse -f qcow2 "$img" || return 1
  must "nbdinfo --map" nbdinfo --map --json "$(uri sparse sparse)" || return 1
  printf '%s' "$OUT" >"$WORK/sparse.map"
  check_map "$WORK/sparse.map" 64M \
    "0 1M 0; 10M 64K 0; 40M 2M 0; 62.9375M 64K 0; 50M 1M 2,3; * 3" || return 1
  must "nbdinfo --map --totals" nbdinfo --map --totals "$(uri sparse sparse)" || return 1
}

c_nbdcopy_sparse_to_export() {
  must "qemu-img create" qemu-img create -q -f qcow2 "$WORK/copy.qcow2" 64M || return 1
  start_server copy -t -e 8 -f qcow2 --detect-zeroes=off "$WORK/copy.qcow2" || return 1
  must "nbdcopy sparse export -> export" nbdcopy "$(uri sparse sparse)" "$(uri copy)" || return 1
  must "copy equals the source" \
    qemu-img compare -f raw -F raw "$(uri sparse sparse)" "$(uri copy)" || return 1
  stop_server copy || return 1
  check_clean "$WORK/copy.qcow2" || return 1
  must "image equals the source image" qemu-img compare "$WORK/sparse.qcow2" "$WORK/copy.qcow2" || return 1
  must "qemu-img map" qemu-img map -f qcow2 --output=json "$WORK/copy.qcow2" || return 1
  printf '%s' "$OUT" >"$WORK/copy.map"
  check_map "$WORK/copy.map" 64M "0 1M data; 10M 64K data; 40M 2M data; 62.9375M 64K data; * nodata"
}

c_nbdcopy_sparse_to_file() {
  # Only meaningful where the file system reports holes.
  truncate -s 1M "$WORK/probe.raw"
  if ! qemu-img map -f raw --output=json "$WORK/probe.raw" | grep -q '"data": false'; then
    echo "file system does not report holes; skipped"
    return 0
  fi
  must "nbdcopy sparse export -> file" nbdcopy "$(uri sparse sparse)" "$WORK/sparse.raw" || return 1
  must "file equals the source" qemu-img compare -f raw -F qcow2 "$WORK/sparse.raw" "$WORK/sparse.qcow2" || return 1
  must "qemu-img map" qemu-img map -f raw --output=json "$WORK/sparse.raw" || return 1
  printf '%s' "$OUT" >"$WORK/sparse-raw.map"
  check_map "$WORK/sparse-raw.map" 64M "0 1M data; 10M 64K data; 40M 2M data; 62.9375M 64K data; * nodata"
}

c_stop_sparse() {
  stop_server sparse && check_clean "$WORK/sparse.qcow2"
}

# --- invocation ------------------------------------------------------------------------------

# --image-opts with -f (even an empty one) is refused in qemu-nbd's words.
c_image_opts_with_format() {
  local f
  must "create image" qemu-img create -q -f raw "$WORK/opts.raw" 1M || return 1
  for f in raw ''; do
    must_fail "--image-opts -f '$f'" timeout 10 "${NBD_SERVER_CMD[@]}" --image-opts -f "$f" \
      -k "$WORK/opts.sock" "driver=raw,file.filename=$WORK/opts.raw" || return 1
    grep -qx "qemu-nbd: --image-opts and -f are mutually exclusive" <<<"$OUT" ||
      { why "--image-opts -f '$f': $OUT"; return 1; }
  done
}

# --- multi-conn ------------------------------------------------------------------------------

# NBD_FLAG_CAN_MULTI_CONN only when more than one client may connect (-e 0 is no limit), also
# for read-only exports: nbdcopy opens several connections to a multi-conn export, and with
# -e 1 the second one would never be accepted.
c_multi_conn() {
  must "create image" qemu-img create -q -f raw "$WORK/mc.raw" 4M || return 1
  local shared want
  for shared in 1 2 0; do
    for ro in -r ''; do
      want=true
      [[ $shared == 1 ]] && want=false
      # shellcheck disable=SC2086  # $ro is empty or one word
      start_server mc -t -e "$shared" $ro -f raw "$WORK/mc.raw" || return 1
      must "nbdinfo (-e $shared $ro)" nbdinfo --json "$(uri mc)" || return 1
      pycheck "
got = d['exports'][0].get('can_multi_conn')
if got is not $( [[ $want == true ]] && echo True || echo False ):
    fail(f'-e $shared $ro: can_multi_conn is {got}')
" <<<"$OUT" || return 1
      must "nbdcopy (-e $shared $ro)" timeout 20 nbdcopy "$(uri mc)" "$WORK/mc.copy" || return 1
      stop_server mc || return 1
    done
  done
}

# --- backing chain: qemu:allocation-depth -----------------------------------------------------

c_allocation_depth() {
  must "create base" qemu-img create -q -f qcow2 "$WORK/base.qcow2" 64M || return 1
  must "write base" qemu-io -f qcow2 "$WORK/base.qcow2" -c "write -P 0x11 0 1M" -c "write -P 0x22 4M 1M" || return 1
  must "create top" qemu-img create -q -f qcow2 -b "$WORK/base.qcow2" -F qcow2 "$WORK/top.qcow2" 64M || return 1
  must "write top" qemu-io -f qcow2 "$WORK/top.qcow2" -c "write -P 0x33 4M 512k" -c "write -P 0x44 8M 1M" || return 1
  start_server depth -t -e 8 "${DEPTH_OPT[@]}" -f qcow2 "$WORK/top.qcow2" || return 1
  must "nbdinfo --map=qemu:allocation-depth" \
    nbdinfo --map=qemu:allocation-depth --json "$(uri depth)" || return 1
  printf '%s' "$OUT" >"$WORK/depth.map"
  check_map "$WORK/depth.map" 64M "0 1M 2; 4M 512K 1; 4.5M 512K 2; 8M 1M 1; * 0" || return 1
  must "nbdinfo --map" nbdinfo --map --json "$(uri depth)" || return 1
  printf '%s' "$OUT" >"$WORK/depth-base.map"
  check_map "$WORK/depth-base.map" 64M "0 1M 0; 4M 1M 0; 8M 1M 0; * 3" || return 1
  qio_ok "reads through the chain" "$(uri depth)" "read -P 0x11 0 1M" "read -P 0x33 4M 512k" \
    "read -P 0x22 $((4 * M + 524288)) 512k" "read -P 0x44 8M 1M" "read -P 0 2M 1M" || return 1
  stop_server depth || return 1
  check_clean "$WORK/top.qcow2" && check_clean "$WORK/base.qcow2"
}

run_case start-main c_start_main
run_case nbdinfo-list c_nbdinfo_list
run_case nbdinfo-export c_nbdinfo_export
run_case nbdcopy-file-to-export c_nbdcopy_to_export
run_case nbdcopy-export-to-file c_nbdcopy_from_export
run_case qemu-io-write-read c_qemu_io_rw
run_case qemu-io-write-zeroes c_qemu_io_zeroes
run_case qemu-io-discard c_qemu_io_discard
run_case qemu-io-flush c_qemu_io_flush
run_case qemu-img-info c_qemu_img_info
run_case qemu-img-compare c_qemu_img_compare
run_case qemu-img-convert-from-export c_qemu_img_convert_from
run_case qemu-img-convert-to-export c_qemu_img_convert_to
run_case fio-randwrite-verify c_fio_randwrite_verify
run_case fio-randread c_fio_randread
run_case stop-main c_stop_main
run_case readonly-export c_readonly
run_case nbdinfo-map c_sparse_map
run_case nbdcopy-sparse-to-export c_nbdcopy_sparse_to_export
run_case nbdcopy-sparse-to-file c_nbdcopy_sparse_to_file
run_case stop-sparse c_stop_sparse
run_case allocation-depth c_allocation_depth
run_case image-opts-with-format c_image_opts_with_format
run_case multi-conn c_multi_conn
echo "# $((SECONDS - T0))s"
finish
