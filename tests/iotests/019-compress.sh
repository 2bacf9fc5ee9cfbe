#!/usr/bin/env bash
# The compress filter: every write is stored as compressed clusters; a partial cluster is
# padded to the whole cluster; a compressed cluster cannot be written again (EIO); an
# unaligned NO_FALLBACK zero write fails; the filter needs a format that can compress and,
# writable, an image size that is a multiple of the cluster size.
. "$(dirname "$0")/common.rc"

_cmp=driver=compress,file.driver=qcow2,file.file.filename=t.qcow2

_section "writes are compressed"
qemu-img create -q -f qcow2 t.qcow2 1M
_run_io --image-opts -c "write -P 0x11 0 64k" -c "write -P 0x22 64k 4k" \
    -c "write -P 0x33 0 64k" -c "write -z -n 192k 4k" -c "write -z 256k 64k" \
    -c "write -z -n 320k 64k" -c "info" -c "read -P 0x22 64k 4k" -c "read -P 0 68k 60k" \
    -c "read -P 0x11 0 64k" "$_cmp"
qemu-img map --output=json t.qcow2
qemu-img check t.qcow2

_section "discard, zero, truncate through the filter"
qemu-img create -q -f qcow2 t.qcow2 1M
_run_io --image-opts -c "write -P 0x44 960k 4k" -c "discard 960k 64k" -c "write -z -u 0 64k" \
    -c "truncate 2M" -c length -c "write -P 0x55 1536k 512" -c "map" "$_cmp"
qemu-img map --output=json t.qcow2
qemu-img check t.qcow2

_section "json: filename"
qemu-img create -q -f qcow2 t.qcow2 1M
_run_io -c "write -P 0x66 128k 128k" \
    "json:{\"driver\":\"compress\",\"file\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"t.qcow2\"}}}"
qemu-img check t.qcow2
qemu-io -c "read -P 0x66 128k 128k" t.qcow2 | _filter_qemu_io

_section "open errors"
qemu-img create -q -f raw r.raw 1M
_run_io --image-opts -c "read 0 4k" driver=compress,file.driver=raw,file.file.filename=r.raw
_run_io --image-opts -c "read 0 4k" driver=compress,file.driver=file,file.filename=r.raw
qemu-img create -q -f qcow2 odd.qcow2 1000k
_run_io --image-opts -c "read 0 4k" driver=compress,file.driver=qcow2,file.file.filename=odd.qcow2
_run_io -r --image-opts -c "read 0 4k" -c "write 0 64k" \
    driver=compress,file.driver=qcow2,file.file.filename=odd.qcow2
_run_io --image-opts -c "read 0 4k" driver=compress
_run_io --image-opts -c "read 0 4k" "$_cmp,foo=1"
