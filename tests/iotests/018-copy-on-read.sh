#!/usr/bin/env bash
# The copy-on-read filter: reads through it copy backing data into the top image, rounded
# out to whole clusters (data as data, zeros as zero clusters); `bottom` stops the copy at a
# node of the chain; the open errors. qemu-img (the reference) shows what was copied.
. "$(dirname "$0")/common.rc"

_chain() {
    rm -f base.qcow2 mid.qcow2 top.qcow2
    qemu-img create -q -f qcow2 base.qcow2 1M
    qemu-io -c "write -P 0x11 0 256k" -c "write -z 256k 64k" base.qcow2 >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 1M
}
_cor=driver=copy-on-read,file.driver=qcow2,file.file.filename=top.qcow2

_section "reads copy whole clusters"
_chain
_run_io --image-opts -c "read -P 0x11 4k 4k" -c "read 200k 100k" -c "read -P 0 900k 10k" \
    -c "info" "$_cor"
qemu-img map --output=json top.qcow2
qemu-img check top.qcow2
_run_io -c "read -P 0x11 0 64k" -c "read -P 0 896k 64k" -c "map" top.qcow2

_section "writes pass through"
_chain
_run_io --image-opts -c "write -P 0x22 64k 4k" -c "read -P 0x11 68k 60k" "$_cor"
qemu-img map --output=json top.qcow2

_section "json: filename"
_chain
_run_io -c "read -P 0x11 128k 64k" \
    "json:{\"driver\":\"copy-on-read\",\"file\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"top.qcow2\"}}}"
qemu-img map --output=json top.qcow2

_section "bottom"
rm -f base.qcow2 mid.qcow2 top.qcow2
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -c "write -P 0x11 0 64k" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 1M
qemu-io -c "write -P 0x22 128k 64k" mid.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 1M
_run_io --image-opts -c "read -P 0x11 0 64k" -c "read -P 0x22 128k 64k" \
    "$_cor,file.backing.node-name=mid,bottom=mid"
qemu-img map --output=json top.qcow2
_run_io --image-opts -c "read -P 0x22 128k 64k" "$_cor,file.node-name=top,bottom=top"

_section "open errors"
_chain
_run_io --image-opts -c "read 0 4k" "$_cor,bottom=nonexist"
_run_io -r --image-opts -c "read 0 4k" "$_cor"
_run_io --image-opts -c "read 0 4k" driver=copy-on-read
_run_io --image-opts -c "read 0 4k" "$_cor,foo=1"
