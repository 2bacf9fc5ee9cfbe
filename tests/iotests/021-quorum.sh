#!/usr/bin/env bash
# quorum: writes reach every child; reads vote (majority wins, ties go to the last child's
# version, three versions with threshold 2 are EIO); rewrite-corrupted repairs an outvoted
# child; fifo reads the first child; blkverify mode ends qemu-io on a difference; the
# children must have one length; QEMU's open errors.
. "$(dirname "$0")/common.rc"

_children() {
    rm -f q0.raw q1.raw q2.raw
    for i in 0 1 2; do qemu-img create -q -f raw q$i.raw 1M; done
}
_q="driver=quorum,children.0.driver=raw,children.0.file.filename=q0.raw"
_q="$_q,children.1.driver=raw,children.1.file.filename=q1.raw"
_q="$_q,children.2.driver=raw,children.2.file.filename=q2.raw"

_section "writes reach every child"
_children
_run_io --image-opts -c "write -P 0x11 0 64k" -c "read -P 0x11 0 64k" -c "info" -c "map" \
    -c "write -z -n 64k 4k" -c "write -z 128k 4k" -c "write -c 0 64k" -c "length" \
    "$_q,vote-threshold=2"
for i in 0 1 2; do qemu-io -f raw -c "read -P 0x11 0 64k" -c "read -P 0 64k 128k" q$i.raw |
    _filter_qemu_io; done

_section "one child outvoted, then repaired"
qemu-io -f raw -c "write -P 0x22 1000 10" q1.raw >/dev/null
_run_io --image-opts -c "read -P 0x11 0 4k" "$_q,vote-threshold=2"
qemu-io -f raw -c "read -v 992 16" q1.raw | _filter_qemu_io
_run_io --image-opts -c "read -P 0x11 0 4k" "$_q,vote-threshold=2,rewrite-corrupted=on"
qemu-io -f raw -c "read -v 992 16" q1.raw | _filter_qemu_io

_section "three versions"
qemu-io -f raw -c "write -P 0x22 1000 10" q1.raw >/dev/null
qemu-io -f raw -c "write -P 0x33 1000 10" q2.raw >/dev/null
_run_io --image-opts -c "read 0 4k" "$_q,vote-threshold=2"
_run_io --image-opts -c "read -v 992 16" "$_q,vote-threshold=1"
_run_io --image-opts -c "read -v 992 16" "$_q,vote-threshold=2,read-pattern=fifo"
_run_io --image-opts -c "read -v 992 16" "$_q,vote-threshold=2,read-pattern=fifo,rewrite-corrupted=on"

_section "blkverify mode"
_run_io --image-opts -c "read -v 0 16" -c "read -v 992 16" \
    driver=quorum,vote-threshold=2,blkverify=on,children.0.driver=raw,children.0.file.filename=q0.raw,children.1.driver=raw,children.1.file.filename=q1.raw

_section "json: filename and a qcow2 child"
_children
qemu-img create -q -f qcow2 q3.qcow2 1M
_run_io -c "write -P 0x44 0 64k" -c "read -P 0x44 0 64k" \
    "json:{\"driver\":\"quorum\",\"vote-threshold\":2,\"children\":[{\"driver\":\"raw\",\"file\":{\"driver\":\"file\",\"filename\":\"q0.raw\"}},{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"q3.qcow2\"}}]}"
qemu-img compare -f raw -F qcow2 q0.raw q3.qcow2
qemu-img check q3.qcow2

_section "open errors"
qemu-img create -q -f qcow2 q4.qcow2 2M
_run_io --image-opts -c "read 0 4k" "$_q,vote-threshold=4"
_run_io --image-opts -c "read 0 4k" "$_q"
_run_io --image-opts -c "read 0 4k" "$_q,vote-threshold=0"
_run_io --image-opts -c "read 0 4k" "$_q,vote-threshold=2,read-pattern=foo"
_run_io --image-opts -c "read 0 4k" "$_q,vote-threshold=2,blkverify=on"
_run_io --image-opts -c "read 0 4k" driver=quorum,vote-threshold=1
_run_io --image-opts -c "read 0 4k" driver=quorum,vote-threshold=1,children.0=q0.raw
_run_io --image-opts -c "read 0 4k" \
    driver=quorum,vote-threshold=1,children.0.driver=raw,children.0.file.filename=q0.raw,children.1.driver=qcow2,children.1.file.filename=q4.qcow2
