#!/usr/bin/env bash
# qblock's NBD client (the nbd protocol driver) against the server in $NBD_SERVER (default
# qemu-nbd; also run with NBD_SERVER="build/debug/bin/qblock nbd"): every case runs the same
# commands through qblock and through QEMU's own client (qemu-io / qemu-img over NBD) and
# compares outputs, exit codes, and the served files (qemu-img compare, qemu-img check).
# Servers listen on Unix sockets in a scratch directory and are stopped by the test.
#
# Environment: QBLOCK (the qblock binary; required), NBD_SERVER, NBD_SKIP, NBD_KEEP (lib.sh).
# shellcheck disable=SC2317  # the case functions are called through run_case
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
for tool in qemu-img qemu-io python3 cmp; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
echo "# server: $NBD_SERVER; client: $QBLOCK; scratch $WORK"
M=$((1 << 20))

# Drops qemu-io's timing lines, which differ from run to run.
untimed() { grep -v ' ops; ' | grep -v 'ops/sec'; }

# same_output DESC FILE1 FILE2: the two files must be identical.
same_output() {
  if ! cmp -s "$2" "$3"; then
    why "$1 differs: $(diff "$2" "$3" | head -n 6 | tr '\n' ' ')"
    return 1
  fi
}

# both_fail DESC ARGS...: `qblock ARGS` and `qemu-img ARGS` must print the same message on
# stderr and exit with the same status (for image subcommands).
both_same() {
  local desc=$1 rc1 rc2
  shift
  "$QBLOCK" "$@" >"$WORK/q.out" 2>"$WORK/q.err"
  rc1=$?
  qemu-img "$@" >"$WORK/r.out" 2>"$WORK/r.err"
  rc2=$?
  if ((rc1 != rc2)); then
    why "$desc: exit $rc1, qemu-img exits $rc2 ($(head -c 200 "$WORK/q.err"))"
    return 1
  fi
  same_output "$desc stderr" "$WORK/q.err" "$WORK/r.err" || return 1
}

# io_same DESC ARGS...: `qblock io ARGS` and `qemu-io ARGS` print the same (timing lines
# dropped) and exit alike.
io_same() {
  local desc=$1 rc1 rc2
  shift
  "$QBLOCK" io "$@" 2>&1 | untimed >"$WORK/q.out"
  rc1=${PIPESTATUS[0]}
  qemu-io "$@" 2>&1 | untimed >"$WORK/r.out"
  rc2=${PIPESTATUS[0]}
  if ((rc1 != rc2)); then
    why "$desc: exit $rc1, qemu-io exits $rc2 ($(head -c 200 "$WORK/q.out"))"
    return 1
  fi
  same_output "$desc output" "$WORK/q.out" "$WORK/r.out" || return 1
}

# The command list both clients run: patterns, FUA, vectored I/O, unaligned I/O, write-zeroes
# with and without MAY_UNMAP, NO_FALLBACK, discard, read-back.
IO_CMDS=(
  'write -P 0x11 0 64k'
  'write -P 0x22 1M 128k'
  'write -f -P 0x33 2M 4k'
  'write -z 3M 1M'
  'write -z -u 4M 1M'
  'discard 5M 1M'
  'write -P 0x44 6291967 1000'
  'writev -P 0x55 7M 4k 8k 512'
  'write -z -n 8M 64k'
  'write -P 0x66 10M 3M'
  'aio_write -P 0x77 14M 64k'
  'aio_flush'
  'write -P 0x78 15M 64k'
  'read -P 0x11 0 64k'
  'read -P 0x22 1M 128k'
  'read -P 0x33 2M 4k'
  'read -P 0 3M 2M'
  'read -P 0x44 6291967 1000'
  'readv -P 0x55 7M 4k 8k 512'
  'read -P 0x66 10M 3M'
  'read -P 0x77 14M 64k'
  'read -v 6291960 16'
  'map'
  'flush'
)
io_args() {
  local c
  for c in "${IO_CMDS[@]}"; do printf '%s\0' -c "$c"; done
}

c_start() {
  # Two identical exports: one for qblock, one for qemu-io, then compared.
  must "qemu-img create" qemu-img create -q -f raw "$WORK/a.raw" 16M || return 1
  must "qemu-io fill" qemu-io -f raw -c 'write -P 0xee 9M 5M' "$WORK/a.raw" || return 1
  cp --sparse=always "$WORK/a.raw" "$WORK/b.raw"
  start_server a -t -e 8 -x exp -f raw --cache=writeback --aio=threads --discard=unmap \
    "$WORK/a.raw" || return 1
  start_server b -t -e 8 -x exp -f raw --cache=writeback --aio=threads --discard=unmap \
    "$WORK/b.raw"
}

c_io_patterns() {
  local args=()
  mapfile -d '' args < <(io_args)
  "$QBLOCK" io -f raw "${args[@]}" "$(uri a exp)" 2>&1 | untimed >"$WORK/io.q"
  local rc1=${PIPESTATUS[0]}
  qemu-io -f raw "${args[@]}" "$(uri b exp)" 2>&1 | untimed >"$WORK/io.r"
  local rc2=${PIPESTATUS[0]}
  ((rc1 == rc2)) || { why "qblock io exits $rc1, qemu-io $rc2"; return 1; }
  same_output "qblock io output" "$WORK/io.q" "$WORK/io.r" || return 1
  if grep -qiE 'fail|mismatch' "$WORK/io.q"; then
    why "qblock io: $(grep -iE -m1 'fail|mismatch' "$WORK/io.q")"
    return 1
  fi
}

c_read_back_with_qemu_io() {
  must "qemu-io read-back over NBD" qemu-io -f raw -r -c 'read -P 0x11 0 64k' \
    -c 'read -P 0x22 1M 128k' -c 'read -P 0x33 2M 4k' -c 'read -P 0 3M 3M' \
    -c 'read -P 0x66 10M 3M' -c 'read -P 0x78 15M 64k' "$(uri a exp)" || return 1
  if grep -qiE 'fail|mismatch' <<<"$OUT"; then
    why "read-back: $(grep -iE -m1 'fail|mismatch' <<<"$OUT")"
    return 1
  fi
  must "compare the exports" qemu-img compare -f raw -F raw "$(uri a exp)" "$(uri b exp)"
}

c_map_json() {
  "$QBLOCK" map -f raw --output=json "$(uri a exp)" >"$WORK/map.q" 2>&1 ||
    { why "qblock map failed: $(head -c 200 "$WORK/map.q")"; return 1; }
  must "qemu-img map" qemu-img map -f raw --output=json "$(uri a exp)" || return 1
  printf '%s\n' "$OUT" >"$WORK/map.r"
  same_output "map --output=json" "$WORK/map.q" "$WORK/map.r" || return 1
  # And the probed format, as `qemu-img map URI` does it.
  "$QBLOCK" map "$(uri a exp)" >"$WORK/map.q" 2>&1
  qemu-img map "$(uri a exp)" >"$WORK/map.r" 2>&1
  same_output "map (human)" "$WORK/map.q" "$WORK/map.r"
}

c_info() {
  "$QBLOCK" info "$(uri a exp)" >"$WORK/info.q" 2>&1
  qemu-img info "$(uri a exp)" >"$WORK/info.r" 2>&1
  same_output "info" "$WORK/info.q" "$WORK/info.r" || return 1
  "$QBLOCK" info --output=json "$(uri a exp)" >"$WORK/info.q" 2>&1
  qemu-img info --output=json "$(uri a exp)" >"$WORK/info.r" 2>&1
  same_output "info --output=json" "$WORK/info.q" "$WORK/info.r"
}

c_convert_from_export() {
  must "qblock convert from NBD" "$QBLOCK" convert -f raw -O qcow2 "$(uri a exp)" \
    "$WORK/out.qcow2" || return 1
  check_clean "$WORK/out.qcow2" || return 1
  must "qemu-img compare" qemu-img compare -f raw -F qcow2 "$(uri a exp)" "$WORK/out.qcow2"
}

c_convert_to_export() {
  must "qemu-img create" qemu-img create -q -f raw "$WORK/t.raw" 16M || return 1
  must "qemu-io fill" qemu-io -f raw -c 'write -P 0xcc 0 16M' "$WORK/t.raw" || return 1
  start_server t -t -e 8 -x tgt -f raw --cache=writeback --aio=threads --discard=unmap \
    "$WORK/t.raw" || return 1
  must "qblock convert -n to NBD" "$QBLOCK" convert -n -f qcow2 -O raw "$WORK/out.qcow2" \
    "$(uri t tgt)" || return 1
  must "qemu-img compare over NBD" qemu-img compare -f qcow2 -F raw "$WORK/out.qcow2" \
    "$(uri t tgt)" || return 1
  stop_server t || return 1
  must "qemu-img compare of the served file" qemu-img compare -f qcow2 -F raw \
    "$WORK/out.qcow2" "$WORK/t.raw"
}

# A qcow2 image whose file node is an NBD export of the raw qcow2 file: random writes
# through qblock, the same through qemu-io on a local copy; then check and compare.
c_qcow2_over_nbd() {
  must "qemu-img create" qemu-img create -q -f qcow2 "$WORK/q.qcow2" 32M || return 1
  # An export has a fixed size: leave room for the clusters the writes allocate.
  truncate -s 64M "$WORK/q.qcow2"
  must "qemu-img create" qemu-img create -q -f qcow2 "$WORK/qref.qcow2" 32M || return 1
  start_server q -t -e 8 -x q -f raw --cache=writeback --aio=threads "$WORK/q.qcow2" ||
    return 1
  local args=() i off len pat
  RANDOM=17
  for ((i = 0; i < 60; i++)); do
    off=$(((RANDOM * 32768 + RANDOM) % (32 * M - 300000)))
    len=$((1 + (RANDOM * 8) % 262144))
    pat=$((RANDOM % 255 + 1))
    case $((i % 6)) in
      0) args+=(-c "write -z $off $len") ;;
      1) args+=(-c "discard $((off / 65536 * 65536)) 131072") ;;
      *) args+=(-c "write -P $pat $off $len") ;;
    esac
  done
  local json="json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$WORK/q.sock\"},\"export\":\"q\"}}"
  must "qblock io on qcow2 over NBD" "$QBLOCK" io "${args[@]}" "$json" || return 1
  if grep -qiE 'fail|error' <<<"$OUT"; then
    why "qblock io: $(grep -iE -m1 'fail|error' <<<"$OUT")"
    return 1
  fi
  must "qemu-io on the local copy" qemu-io "${args[@]}" "$WORK/qref.qcow2" || return 1
  must "qemu-img compare over NBD" qemu-img compare "$json" "$WORK/qref.qcow2" || return 1
  stop_server q || return 1
  check_clean "$WORK/q.qcow2" || return 1
  must "qemu-img compare of the served file" qemu-img compare "$WORK/q.qcow2" \
    "$WORK/qref.qcow2"
}

# Without -f the format is probed on the image's own connection, as QEMU does: a server that
# serves one client and then exits (no -t) still serves the whole command.
c_probe_one_connection() {
  must "qemu-img create" qemu-img create -q -f qcow2 "$WORK/p.qcow2" 4M || return 1
  must "qemu-io fill" qemu-io -c 'write -P 0x5a 64k 64k' "$WORK/p.qcow2" || return 1
  local what i
  for what in io info; do
    start_server p -x p -f raw "$WORK/p.qcow2" || return 1
    if [[ $what == io ]]; then
      must "qblock io (format probed)" "$QBLOCK" io -c 'read -P 0x5a 64k 64k' \
        -c 'read -P 0 0 64k' "$(uri p p)" || return 1
      if grep -qiE 'fail|mismatch' <<<"$OUT"; then
        why "qblock io: $(grep -iE -m1 'fail|mismatch' <<<"$OUT")"
        return 1
      fi
    else
      must "qblock info (format probed)" "$QBLOCK" info "$(uri p p)" || return 1
      if [[ $OUT != *"file format: qcow2"* ]]; then
        why "qblock info did not probe qcow2: $(head -c 200 <<<"$OUT")"
        return 1
      fi
    fi
    # Its only client gone, the server exits by itself.
    for ((i = 0; i < 200; i++)); do
      [[ -f $WORK/p.status ]] && break
      sleep 0.05
    done
    if [[ $(cat "$WORK/p.status" 2>/dev/null) != "exit 0" ]]; then
      why "the one-client server did not exit 0 after qblock $what"
      return 1
    fi
  done
}

c_multi_conn() {
  must "qemu-img create" qemu-img create -q -f raw "$WORK/m.raw" 8M || return 1
  start_server m -t -e 8 -x exp -f raw --cache=writeback --aio=threads "$WORK/m.raw" ||
    return 1
  local json="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"multi-conn\":4,\"server\":{\"type\":\"unix\",\"path\":\"$WORK/m.sock\"},\"export\":\"exp\"}}"
  local args=() i
  for ((i = 0; i < 32; i++)); do args+=(-c "aio_write -P $((i + 1)) $((i * 256 * 1024)) 256k"); done
  args+=(-c aio_flush)
  for ((i = 0; i < 32; i++)); do args+=(-c "read -P $((i + 1)) $((i * 256 * 1024)) 256k"); done
  must "qblock io with multi-conn=4" "$QBLOCK" io "${args[@]}" "$json" || return 1
  if grep -qiE 'fail|mismatch' <<<"$OUT"; then
    why "multi-conn: $(grep -iE -m1 'fail|mismatch' <<<"$OUT")"
    return 1
  fi
  must "qemu-io read-back" qemu-io -f raw -r -c 'read -P 32 7936k 256k' "$(uri m exp)" ||
    return 1
  stop_server m
}

c_errors() {
  local u
  for u in "nbd+unix:///?socket=$WORK/none.sock" 'nbd://127.0.0.1:1/' 'nbd://' \
    'nbd+unix:///' 'nbd+bogus://x/' 'nbds+unix:///?socket=/x' 'nbd://host:abc/' \
    'nbd:///?foo=bar' "nbd+unix:///exp?socket=$WORK/a.sock&foo=1" \
    "nbd+unix:///wrong?socket=$WORK/a.sock" "nbd:unix:$WORK/none.sock:exportname=e" \
    'nbd:localhost'; do
    both_same "info $u" info "$u" || return 1
  done
  # Option trees (qblock info takes plain filenames only; qblock io opens json: as qemu-io).
  for u in 'json:{"driver":"nbd"}' 'json:{"driver":"nbd","server":{"type":"unix"}}' \
    'json:{"driver":"nbd","server":{"type":"bogus"}}' \
    "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$WORK/a.sock\"},\"export\":\"exp\",\"bogus\":1}" \
    "json:{\"driver\":\"nbd\",\"server\":{\"type\":\"unix\",\"path\":\"$WORK/a.sock\"},\"export\":\"exp\",\"tls-creds\":\"t0\"}" \
    'json:{"driver":"nbd","server":{"type":"unix","path":"/x"},"reconnect-delay":"x"}'; do
    io_same "io $u" -c 'read 0 4k' "$u" || return 1
  done
  io_same "qemu-io on a missing socket" -c 'read 0 4k' "nbd+unix:///?socket=$WORK/none.sock" ||
    return 1
}

c_read_only_export() {
  cp --sparse=always "$WORK/b.raw" "$WORK/ro.raw"
  start_server ro -t -e 8 -r -x exp -f raw "$WORK/ro.raw" || return 1
  io_same "write to a read-only export" -f raw -c 'write 0 4k' "$(uri ro exp)" || return 1
  io_same "read from a read-only export" -f raw -r -c 'read -P 0x11 0 64k' "$(uri ro exp)" ||
    return 1
  both_same "convert -n to a read-only export" convert -n -f qcow2 -O raw "$WORK/out.qcow2" \
    "$(uri ro exp)" || return 1
  stop_server ro
}

# reconnect-delay: the server is stopped and started again while qblock io sleeps between
# two writes; the second write waits for the new connection instead of failing.
c_reconnect() {
  must "qemu-img create" qemu-img create -q -f raw "$WORK/rc.raw" 8M || return 1
  start_server rc -t -e 8 -x exp -f raw --cache=writeback "$WORK/rc.raw" || return 1
  local json="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"reconnect-delay\":20,\"server\":{\"type\":\"unix\",\"path\":\"$WORK/rc.sock\"},\"export\":\"exp\"}}"
  "$QBLOCK" io -c 'write -P 1 0 1M' -c 'sleep 3000' -c 'write -P 2 1M 1M' -c 'read -P 1 0 1M' \
    -c 'read -P 2 1M 1M' "$json" >"$WORK/rc.out" 2>&1 &
  local client=$!
  sleep 1
  stop_server rc || { kill "$client"; return 1; }
  start_server rc -t -e 8 -x exp -f raw --cache=writeback "$WORK/rc.raw" ||
    { kill "$client"; return 1; }
  if ! wait "$client"; then
    why "qblock io across a server restart failed: $(tail -n 2 "$WORK/rc.out" | tr '\n' ' ')"
    return 1
  fi
  if grep -qiE 'fail|mismatch|error' "$WORK/rc.out"; then
    why "reconnect: $(grep -iE -m1 'fail|mismatch|error' "$WORK/rc.out")"
    return 1
  fi
  must "qemu-io read-back" qemu-io -f raw -r -c 'read -P 2 1M 1M' "$(uri rc exp)" || return 1
  grep -q mismatch <<<"$OUT" && { why "read-back after reconnect: mismatch"; return 1; }
  stop_server rc
}

c_stop() {
  stop_server a || return 1
  stop_server b || return 1
  must "qemu-img compare of the served files" qemu-img compare -f raw -F raw "$WORK/a.raw" \
    "$WORK/b.raw"
}

run_case start c_start
run_case io-patterns c_io_patterns
run_case read-back-with-qemu-io c_read_back_with_qemu_io
run_case map-json c_map_json
run_case info c_info
run_case convert-from-export c_convert_from_export
run_case convert-to-export c_convert_to_export
run_case qcow2-over-nbd c_qcow2_over_nbd
run_case probe-one-connection c_probe_one_connection
run_case multi-conn c_multi_conn
run_case errors c_errors
run_case read-only-export c_read_only_export
run_case reconnect c_reconnect
run_case stop c_stop
finish
