#!/usr/bin/env bash
# The NBD client's reconnect-delay against the server in $NBD_SERVER (default qemu-nbd; also
# run with NBD_SERVER="build/debug/bin/qblock nbd"): `qblock io` writes batches of parallel
# aio_writes (each batch then aio_flush) to an export while the server is killed with SIGKILL
# and started again mid-workload. Every write must be acknowledged (requests in flight are
# sent again on the new connection) and the served file must equal a model of the writes
# built independently; a qcow2 export must also pass qemu-img check. Once the delay is over
# without a server, requests fail with EIO, as QEMU's do. x509 TLS is tested the same way.
#
# Environment: QBLOCK (the qblock binary; required), NBD_SERVER, NBD_SKIP, NBD_KEEP (lib.sh).
# shellcheck disable=SC2317  # the case functions are called through run_case
set -u -o pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/lib.sh"

QBLOCK=${QBLOCK:?set QBLOCK to the qblock binary}
for tool in qemu-img qemu-io python3 cmp certtool; do
  command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
echo "# server: $NBD_SERVER; client: $QBLOCK; scratch $WORK"

BATCHES=60
PER_BATCH=8
CHUNK=65536
AREA=$((8 << 20)) # writes wrap around this area, so later batches overwrite earlier ones

# workload FILE: the qemu-io commands (one per line) and, in FILE.model, the expected image
# contents of the area (python writes both from the same list, so the model is independent
# of the client).
workload() {
  python3 - "$1" "$BATCHES" "$PER_BATCH" "$CHUNK" "$AREA" <<'PY'
import random, sys
path, batches, per, chunk, area = sys.argv[1], *map(int, sys.argv[2:])
rnd = random.Random(20261207)
model = bytearray(area)
slots = area // chunk
with open(path, "w") as f:
    for b in range(batches):
        picks = rnd.sample(range(slots), per)  # distinct offsets: parallel writes commute
        for p in picks:
            pattern = rnd.randrange(1, 256)
            f.write(f"aio_write -P {pattern} {p * chunk} {chunk}\n")
            model[p * chunk:(p + 1) * chunk] = bytes([pattern]) * chunk
        f.write("aio_flush\n")
        f.write("sleep 40\n")
with open(path + ".model", "wb") as f:
    f.write(model)
PY
}

# kill_server NAME: SIGKILL, as a crash: no flush, no goodbye to the clients.
kill_server() {
  local pid
  pid=$(cat "$WORK/$1.pid" 2>/dev/null)
  [[ $pid =~ ^[0-9]+$ ]] || { why "server $1: no pid file"; return 1; }
  kill -KILL "$pid"
  for _ in $(seq 100); do [[ -f $WORK/$1.status ]] && break; sleep 0.05; done
  rm -f "$WORK/$1.pid" "$WORK/$1.sock"
}

# crash_run NAME FORMAT JSON_EXTRA SERVER_ARGS...: the workload through
# json:{nbd, reconnect-delay 30, ...JSON_EXTRA}, the server killed twice mid-way and
# restarted; then the served file (read locally) must equal the model.
crash_run() {
  local name=$1 fmt=$2 extra=$3
  shift 3
  workload "$WORK/$name.cmds" || return 1
  local args=()
  while read -r line; do args+=(-c "$line"); done <"$WORK/$name.cmds"
  start_server "$name" -t -e 8 -x exp -f "$fmt" "$@" "$WORK/$name.$fmt" || return 1
  local json="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"reconnect-delay\":30,$extra\"server\":{\"type\":\"unix\",\"path\":\"$WORK/$name.sock\"},\"export\":\"exp\"}}"
  "$QBLOCK" io "${TLS_OBJECT[@]}" "${args[@]}" "$json" >"$WORK/$name.out" 2>&1 &
  local client=$! round
  for round in 1 2; do
    sleep 0.8
    kill_server "$name" || { kill "$client"; return 1; }
    sleep 0.5 # requests meet a dead server meanwhile
    start_server "$name" -t -e 8 -x exp -f "$fmt" "$@" "$WORK/$name.$fmt" ||
      { kill "$client"; return 1; }
  done
  if ! wait "$client"; then
    why "qblock io across the crashes failed: $(grep -m1 -iE 'fail|error' "$WORK/$name.out")"
    return 1
  fi
  local acked
  acked=$(grep -c '^wrote ' "$WORK/$name.out")
  if ((acked != BATCHES * PER_BATCH)) || grep -qiE 'fail|error' "$WORK/$name.out"; then
    why "$acked of $((BATCHES * PER_BATCH)) writes acknowledged: $(grep -m1 -iE 'fail|error' "$WORK/$name.out")"
    return 1
  fi
  # Was the server really killed while the workload ran? (The log shows three starts.)
  (($(grep -c -- '--fork' "$WORK/$name.log") == 3)) || { why "server not restarted twice"; return 1; }
  stop_server "$name" || return 1
  if [[ $fmt == qcow2 ]]; then
    # No corruption (exit 2) allowed. Leaked clusters (exit 3) are: a server killed with
    # clusters preallocated ahead of its data (qblock's preallocate filter) leaves them
    # unreferenced, "waste of disk space, but no harm to data", as QEMU's filter would.
    qemu-img check "$WORK/$name.qcow2" >"$WORK/$name.check" 2>&1
    local rc=$?
    if ((rc != 0 && rc != 3)); then
      why "qemu-img check: exit $rc: $(head -n 3 "$WORK/$name.check" | tr '\n' ' ')"
      return 1
    fi
  fi
  qemu-img convert -f "$fmt" -O raw "$WORK/$name.$fmt" "$WORK/$name.back" || return 1
  if ! head -c "$AREA" "$WORK/$name.back" | cmp -s - "$WORK/$name.cmds.model"; then
    why "served file differs from the model of the acknowledged writes"
    return 1
  fi
}

TLS_OBJECT=()
c_raw() {
  qemu-img create -q -f raw "$WORK/raw.raw" 16M || return 1
  crash_run raw raw "" --cache=writeback
}

c_qcow2() {
  # writethrough: an acknowledged write is on disk with its metadata before the reply, so a
  # server killed right after it loses nothing (with writeback only flushed writes are safe).
  qemu-img create -q -f qcow2 "$WORK/q.qcow2" 16M || return 1
  crash_run q qcow2 "" --cache=writethrough
}

c_tls() {
  bash "$here/make-tls-creds.sh" "$WORK/creds" >/dev/null || return 1
  qemu-img create -q -f raw "$WORK/t.raw" 16M || return 1
  TLS_OBJECT=(--object "tls-creds-x509,id=tc,dir=$WORK/creds,endpoint=client")
  crash_run t raw '"tls-creds":"tc","tls-hostname":"localhost",' --cache=writeback \
    --object "tls-creds-x509,id=ts,dir=$WORK/creds,endpoint=server" --tls-creds ts
  local r=$?
  TLS_OBJECT=()
  return $r
}

# After reconnect-delay without a server, a request fails with EIO, as QEMU's.
c_delay_expires() {
  qemu-img create -q -f raw "$WORK/e.raw" 4M || return 1
  start_server e -t -e 8 -x exp -f raw "$WORK/e.raw" || return 1
  local json="json:{\"driver\":\"raw\",\"file\":{\"driver\":\"nbd\",\"reconnect-delay\":2,\"server\":{\"type\":\"unix\",\"path\":\"$WORK/e.sock\"},\"export\":\"exp\"}}"
  local client
  "$QBLOCK" io -c 'write -P 1 0 64k' -c 'sleep 1500' -c 'write -P 2 0 64k' "$json" \
    >"$WORK/e.q" 2>&1 &
  client=$!
  qemu-io -c 'write -P 1 0 64k' -c 'sleep 1500' -c 'write -P 2 0 64k' "$json" \
    2>&1 | grep -v ops/sec >"$WORK/e.r" &
  local reference=$!
  sleep 0.7
  kill_server e || return 1
  local t0=$SECONDS
  wait "$client"
  wait "$reference"
  # qblock io reports the flush that closing the image makes (it fails too: no server);
  # qemu-io's close drops that error silently. Only the commands' output is compared.
  grep -v ops/sec "$WORK/e.q" | grep -v '^qemu-io: flush: ' >"$WORK/e.q2"
  if ! cmp -s "$WORK/e.q2" "$WORK/e.r"; then
    why "qblock io and qemu-io differ: $(diff "$WORK/e.q2" "$WORK/e.r" | tr '\n' ' ')"
    return 1
  fi
  grep -q 'write failed: Input/output error' "$WORK/e.q2" || { why "no EIO: $(cat "$WORK/e.q2")"; return 1; }
  ((SECONDS - t0 >= 1)) || { why "failed before reconnect-delay was over"; return 1; }
}

run_case raw-server-killed c_raw
run_case qcow2-server-killed c_qcow2
run_case tls-server-killed c_tls
run_case delay-expires c_delay_expires
finish
