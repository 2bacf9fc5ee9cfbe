#!/bin/bash
# QEMU as the client (the live-storage-migration pattern): qemu-storage-daemon 7.2 exports
# src.qcow2, mirrors it onto an NBD export of `qblock storage-daemon` (dst.qcow2, through
# QEMU's nbd driver) while qemu-io writes through QEMU's export, and completes the job. dst
# must then equal src (qemu-img compare) and pass qemu-img check.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
QBLOCK=${QBLOCK:-$HERE/../../build/debug/bin/qblock}
command -v qemu-storage-daemon >/dev/null || { echo "qemu-storage-daemon missing: skipped"; exit 77; }
TOP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TOP"' EXIT
export DIR=$TOP QMP_JOB_PROGRESS=any
wait_socket() { for _ in $(seq 100); do [ -S "$1" ] && return 0; sleep 0.05; done; return 1; }

qemu-img create -q -f qcow2 "$DIR/src.qcow2" 64M
qemu-io -c 'write -P 0x11 0 8M' -c 'write -z 16M 8M' -c 'write -P 0x22 40M 4M' \
  "$DIR/src.qcow2" >/dev/null
qemu-img create -q -f qcow2 "$DIR/dst.qcow2" 64M

"$QBLOCK" storage-daemon \
  --blockdev driver=qcow2,node-name=dst,file.driver=file,file.filename="$DIR/dst.qcow2" \
  --nbd-server addr.type=unix,addr.path="$DIR/qblock-nbd.sock" \
  --export type=nbd,id=e,node-name=dst,name=dst,writable=on \
  --chardev socket,id=m,path="$DIR/qblock-qmp.sock",server=on,wait=off --monitor chardev=m \
  >"$DIR/qblock.log" 2>&1 &
qblock_pid=$!
wait_socket "$DIR/qblock-nbd.sock" || { echo "qblock storage-daemon did not start"; exit 1; }
qemu-storage-daemon \
  --blockdev driver=qcow2,node-name=src,file.driver=file,file.filename="$DIR/src.qcow2" \
  --blockdev driver=nbd,node-name=tgt,server.type=unix,server.path="$DIR/qblock-nbd.sock",export=dst \
  --nbd-server addr.type=unix,addr.path="$DIR/qemu-nbd.sock" \
  --export type=nbd,id=e,node-name=src,name=src,writable=on \
  --chardev socket,id=m,path="$DIR/qemu-qmp.sock",server=on,wait=off --monitor chardev=m \
  >"$DIR/qemu.log" 2>&1 &
qemu_pid=$!
wait_socket "$DIR/qemu-qmp.sock" || { echo "qemu-storage-daemon did not start"; exit 1; }

cat >"$DIR/qemu.qmp" <<'QMP'
{"execute":"qmp_capabilities"}
{"execute":"blockdev-mirror","arguments":{"job-id":"j","device":"src","target":"tgt","sync":"full","speed":33554432}}
shell qemu-io -f raw -c 'write -P 0x5a 1M 1M' -c 'write -P 0x5b 30M 64k' -c 'write -z 41M 1M' 'nbd+unix:///src?socket=$DIR/qemu-nbd.sock' | grep -v ops/sec
{"execute":"block-job-set-speed","arguments":{"device":"j","speed":0}}
wait BLOCK_JOB_READY
{"execute":"block-job-complete","arguments":{"device":"j"}}
wait BLOCK_JOB_COMPLETED
{"execute":"quit"}
QMP
echo '{"execute":"qmp_capabilities"}
{"execute":"quit"}' >"$DIR/qblock.qmp"
status=0
timeout 60 python3 "$HERE/qmp_client.py" "$DIR/qemu-qmp.sock" "$DIR/qemu.qmp" || status=1
wait $qemu_pid || status=1
timeout 20 python3 "$HERE/qmp_client.py" "$DIR/qblock-qmp.sock" "$DIR/qblock.qmp" >/dev/null || status=1
wait $qblock_pid || status=1
cat "$DIR/qemu.log" "$DIR/qblock.log"
qemu-img compare "$DIR/src.qcow2" "$DIR/dst.qcow2" || status=1
qemu-img check "$DIR/dst.qcow2" || status=1
exit $status
