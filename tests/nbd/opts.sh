#!/usr/bin/env bash
# qemu-nbd's -L (list a server's exports), -l (serve an internal snapshot) and -s (writes go to
# a temporary overlay) in `qblock nbd`, judged against qemu-nbd 7.2 (issue 14):
#   list-*      `qblock nbd -L` and `qemu-nbd -L` print the same and exit alike against the
#               same server, for both servers (qemu-nbd and qblock nbd), over a Unix socket,
#               over TCP and with TLS (x509 and PSK), and for the refusals;
#   snap-*      both servers started with the same -l form serve the same snapshot (read back
#               and compared with the snapshot's own copy) or fail with the same message;
#   overlay-*   with -s the client's writes read back, the image stays unchanged, and no
#               temporary file is left behind.
#
# Environment: QBLOCK (the qblock binary; required), NBD_KEEP, NBD_SKIP (lib.sh).
# shellcheck disable=SC2317  # the case functions are called through run_case
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
for tool in qemu-img qemu-io qemu-nbd python3 certtool; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
echo "# qblock: $QBLOCK; scratch $WORK"
SERVERS=("qemu-nbd" "$QBLOCK nbd")
bash "$here/make-tls-creds.sh" "$WORK/creds" >/dev/null || exit 2

# disk.qcow2: 64 MiB; snapshot s1 (id 1) holds 0x11 at 1M, s2 (id 2) also 0x22 at 2M, the
# current state also 0x33 at 3M. A raw copy of each is kept.
qemu-img create -q -f qcow2 "$WORK/disk.qcow2" 64M
qemu-io -f qcow2 -c 'write -P 0x11 1M 1M' "$WORK/disk.qcow2" >/dev/null
qemu-img snapshot -c s1 "$WORK/disk.qcow2"
qemu-io -f qcow2 -c 'write -P 0x22 2M 1M' "$WORK/disk.qcow2" >/dev/null
qemu-img snapshot -c s2 "$WORK/disk.qcow2"
qemu-io -f qcow2 -c 'write -P 0x33 3M 1M' "$WORK/disk.qcow2" >/dev/null
for s in s1 s2; do
  qemu-img convert -l "snapshot.name=$s" -O raw "$WORK/disk.qcow2" "$WORK/$s.raw"
done
qemu-img convert -O raw "$WORK/disk.qcow2" "$WORK/current.raw"
qemu-img create -q -f raw "$WORK/plain.raw" 1M

# same_run ARGS...: `qemu-nbd ARGS` and `qblock nbd ARGS` print the same (stdout and stderr,
# as one stream with the tool's name normalized) and exit alike.
same_run() {
  local rc1 rc2
  qemu-nbd "$@" >"$WORK/r.out" 2>&1
  rc2=$?
  "$QBLOCK" nbd "$@" 2>&1 | sed 's/qblock nbd/qemu-nbd/g' >"$WORK/q.out"
  rc1=${PIPESTATUS[0]}
  if ((rc1 != rc2)); then
    why "exit $rc1, qemu-nbd exits $rc2: $(head -c 300 "$WORK/q.out")"
    return 1
  fi
  if ! cmp -s "$WORK/q.out" "$WORK/r.out"; then
    why "output differs: $(diff "$WORK/q.out" "$WORK/r.out" | head -n 8 | tr '\n' ' ')"
    return 1
  fi
}

# serve SERVER NAME ARGS...: starts SERVER (a command line) as server NAME.
serve() {
  local server=$1 name=$2
  shift 2
  read -r -a NBD_SERVER_CMD <<<"$server"
  start_server "$name" -t -e 8 "$@"
}

# --- -L ------------------------------------------------------------------------------------

list_unix() {  # SERVER SERVER-ARGS...: both clients list the same server
  local server=$1
  shift
  serve "$server" ls "$@" || return 1
  same_run -L -k "$WORK/ls.sock" || { stop_server ls; return 1; }
  grep -q "^exports available: 1" "$WORK/q.out" || { why "no export listed"; stop_server ls; return 1; }
  stop_server ls
}

list_tcp() {  # SERVER: over TCP on 127.0.0.1
  local server=$1 port
  port=$((20000 + RANDOM % 20000))
  read -r -a NBD_SERVER_CMD <<<"$server"
  rm -f "$WORK/tcp.pid"
  "${NBD_SERVER_CMD[@]}" -t -e 8 -b 127.0.0.1 -p "$port" --fork --pid-file "$WORK/tcp.pid" \
    -f qcow2 -x tcp "$WORK/disk.qcow2" >"$WORK/tcp.log" 2>&1 ||
    { why "server did not start: $(cat "$WORK/tcp.log")"; return 1; }
  local rc=0
  same_run -L -b 127.0.0.1 -p "$port" || rc=1
  kill -TERM "$(cat "$WORK/tcp.pid")" 2>/dev/null
  for ((i = 0; i < 100; i++)); do [[ -f $WORK/tcp.pid ]] || break; kill -0 "$(cat "$WORK/tcp.pid")" 2>/dev/null || break; sleep 0.1; done
  return $rc
}

# list_tls SERVER TYPE: a TLS server with x509 or psk credentials (x509 over TCP, where the
# client checks the certificate against 127.0.0.1; psk on a Unix socket). Both clients list it
# with credentials, both fail alike without them, with server credentials, and (x509) over a
# Unix socket, where QEMU has no host name to check the certificate against.
list_tls() {
  local server=$1 type=$2 port user="" rc=0 where
  [[ $type == psk ]] && user=,username=qblock
  port=$((20000 + RANDOM % 20000))
  read -r -a NBD_SERVER_CMD <<<"$server"
  local listen=(-k "$WORK/tls.sock")
  where=(-k "$WORK/tls.sock")
  if [[ $type == x509 ]]; then
    listen=(-b 127.0.0.1 -p "$port")
    where=(-b 127.0.0.1 -p "$port")
  fi
  rm -f "$WORK/tls.pid"
  "${NBD_SERVER_CMD[@]}" -t -e 8 "${listen[@]}" --fork --pid-file "$WORK/tls.pid" \
    --object "tls-creds-$type,id=ts,dir=$WORK/creds,endpoint=server" --tls-creds ts \
    -x secure -f qcow2 "$WORK/disk.qcow2" >"$WORK/tls.log" 2>&1 ||
    { why "server did not start: $(cat "$WORK/tls.log")"; return 1; }
  local client=(--object "tls-creds-$type,id=tc,dir=$WORK/creds,endpoint=client$user")
  same_run -L "${where[@]}" "${client[@]}" --tls-creds tc || rc=1
  ((rc)) || grep -q "export: 'secure'" "$WORK/q.out" || { why "not listed"; rc=1; }
  ((rc)) || same_run -L "${where[@]}" || rc=1
  ((rc)) || same_run -L "${where[@]}" --object "tls-creds-$type,id=tc,dir=$WORK/creds,endpoint=server" \
    --tls-creds tc || rc=1
  if ((!rc)) && [[ $type == x509 ]]; then
    same_run -L -k "$WORK/nothing.sock" "${client[@]}" --tls-creds tc || rc=1
  fi
  kill -TERM "$(cat "$WORK/tls.pid")" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$(cat "$WORK/tls.pid")" 2>/dev/null || break; sleep 0.1; done
  return $rc
}

# list_tls_unix_x509 SERVER: x509 on a Unix socket; verify-peer=off lists, on fails alike.
list_tls_unix_x509() {
  local server=$1 rc=0
  serve "$server" tlsu --object "tls-creds-x509,id=ts,dir=$WORK/creds,endpoint=server" \
    --tls-creds ts -f qcow2 "$WORK/disk.qcow2" || return 1
  same_run -L -k "$WORK/tlsu.sock" \
    --object "tls-creds-x509,id=tc,dir=$WORK/creds,endpoint=client" --tls-creds tc || rc=1
  ((rc)) || same_run -L -k "$WORK/tlsu.sock" \
    --object "tls-creds-psk,id=tc,dir=$WORK/creds,endpoint=client,username=qblock" \
    --tls-creds tc || rc=1
  stop_server tlsu || rc=1
  return $rc
}

i=0
for srv in "${SERVERS[@]}"; do
  tag=qemu-nbd
  [[ $srv == "qemu-nbd" ]] || tag=qblock-nbd
  run_case "list-$tag-plain" list_unix "$srv" -f qcow2 "$WORK/disk.qcow2"
  run_case "list-$tag-named" list_unix "$srv" -x exp -D "a description" -f qcow2 \
    "$WORK/disk.qcow2"
  run_case "list-$tag-readonly-depth" list_unix "$srv" -r -A -x ro -f qcow2 "$WORK/disk.qcow2"
  run_case "list-$tag-raw-shared1" list_unix "$srv" -e 1 -f raw "$WORK/plain.raw"
  run_case "list-$tag-tcp" list_tcp "$srv"
  run_case "list-$tag-tls-x509" list_tls "$srv" x509
  run_case "list-$tag-tls-psk" list_tls "$srv" psk
  run_case "list-$tag-tls-x509-unix" list_tls_unix_x509 "$srv"
  i=$((i + 1))
done
run_case list-no-server same_run -L -k "$WORK/nothing.sock"
run_case list-with-file same_run -L -k "$WORK/nothing.sock" "$WORK/disk.qcow2"
run_case list-per-device same_run -L -x name -k "$WORK/nothing.sock"
run_case list-per-device-format same_run -L -f qcow2 -k "$WORK/nothing.sock"
run_case list-per-device-snapshot same_run -L -l s1 -k "$WORK/nothing.sock"
run_case list-fork same_run -L --fork -k "$WORK/nothing.sock"
run_case list-authz same_run -L --tls-creds x --tls-authz y -k "$WORK/nothing.sock"

# --- -l ------------------------------------------------------------------------------------

# snap_serves SERVER EXPECTED ARGS...: SERVER with ARGS serves EXPECTED (a raw file),
# read-only.
snap_serves() {
  local server=$1 expected=$2
  shift 2
  serve "$server" snap -f qcow2 "$@" "$WORK/disk.qcow2" || return 1
  local rc=0
  rm -f "$WORK/got.raw"
  must "read the export" qemu-img convert -f raw -O raw "$(uri snap)" "$WORK/got.raw" || rc=1
  ((rc)) || cmp -s "$WORK/got.raw" "$expected" || { why "export differs from $expected"; rc=1; }
  ((rc)) || must_fail "write to the export" qemu-io -f raw -c 'write 0 4k' "$(uri snap)" || rc=1
  stop_server snap || rc=1
  return $rc
}

for srv in "${SERVERS[@]}"; do
  tag=qemu-nbd
  [[ $srv == "qemu-nbd" ]] || tag=qblock-nbd
  run_case "snap-$tag-name" snap_serves "$srv" "$WORK/s1.raw" -r -l s1
  run_case "snap-$tag-id" snap_serves "$srv" "$WORK/s2.raw" -r -l 2
  run_case "snap-$tag-opts-name" snap_serves "$srv" "$WORK/s2.raw" -l snapshot.name=s2
  run_case "snap-$tag-opts-id" snap_serves "$srv" "$WORK/s1.raw" --load-snapshot=snapshot.id=1
  run_case "snap-$tag-no-r" snap_serves "$srv" "$WORK/s1.raw" -l s1
done
run_case snap-missing same_run -f qcow2 -l nosuch -k "$WORK/x.sock" "$WORK/disk.qcow2"
run_case snap-missing-id same_run -f qcow2 -l snapshot.id=9 -k "$WORK/x.sock" "$WORK/disk.qcow2"
run_case snap-mismatch same_run -f qcow2 -l snapshot.id=1,snapshot.name=s2 -k "$WORK/x.sock" \
  "$WORK/disk.qcow2"
run_case snap-bad-key same_run -f qcow2 -l snapshot.id=1,bogus=2 -k "$WORK/x.sock" \
  "$WORK/disk.qcow2"
run_case snap-raw same_run -f raw -l s1 -k "$WORK/x.sock" "$WORK/plain.raw"

# --- -s ------------------------------------------------------------------------------------

overlay() {  # SERVER [ARGS...]
  local server=$1
  shift
  local tmp=$WORK/tmp
  rm -rf "$tmp"
  mkdir -p "$tmp"
  cp "$WORK/disk.qcow2" "$WORK/before.qcow2"
  TMPDIR=$tmp serve "$server" ov -s "$@" "$WORK/disk.qcow2" || return 1
  local rc=0
  must "write through the export" qemu-io -f raw -c 'write -P 0x44 3M 64k' -c 'write -z 1M 4k' \
    "$(uri ov)" || rc=1
  ((rc)) || must "read back" qemu-io -f raw -c 'read -P 0x44 3M 64k' -c 'read -P 0 1M 4k' \
    -c 'read -P 0x11 1052672 4k' -c 'read -P 0x33 3211264 4k' "$(uri ov)" || rc=1
  [[ $OUT == *"Pattern verification failed"* ]] && { why "read back: $OUT"; rc=1; }
  stop_server ov || rc=1
  ((rc)) || must "image unchanged" qemu-img compare -f qcow2 -F qcow2 "$WORK/disk.qcow2" \
    "$WORK/before.qcow2" || rc=1
  ((rc)) || cmp -s "$WORK/disk.qcow2" "$WORK/before.qcow2" || { why "image file changed"; rc=1; }
  [[ -z $(ls -A "$tmp") ]] || { why "left behind in TMPDIR: $(ls "$tmp")"; rc=1; }
  return $rc
}

for srv in "${SERVERS[@]}"; do
  tag=qemu-nbd
  [[ $srv == "qemu-nbd" ]] || tag=qblock-nbd
  run_case "overlay-$tag" overlay "$srv" -f qcow2
  run_case "overlay-$tag-probed" overlay "$srv"
done
finish
