#!/usr/bin/env bash
# blkverify: writes go to the test and the raw child, reads are compared; a difference in
# contents or in the children's results ends qemu-io with blkverify's message and exit
# status 1. `info` names the driver twice; write -z -n and write -c are not supported.
. "$(dirname "$0")/common.rc"

_images() {
    rm -f r.raw t.qcow2
    qemu-img create -q -f raw r.raw 1M
    qemu-img create -q -f qcow2 t.qcow2 1M
}
_bv=driver=blkverify,test.driver=qcow2,test.file.filename=t.qcow2,raw.driver=raw,raw.file.filename=r.raw

_section "writes go to both, reads agree"
_images
_run_io --image-opts -c "write -P 0x11 0 64k" -c "read -P 0x11 0 64k" -c "info" \
    -c "write -P 0x33 100k 1k" -c "read -P 0x33 100k 1k" -c "discard 0 4k" -c "map" -c "length" \
    -c "write -c 0 64k" -c "write -z -n 128k 64k" -c "flush" "$_bv"
qemu-img compare -f raw -F qcow2 r.raw t.qcow2
qemu-img check t.qcow2

_section "contents mismatch"
qemu-io -f raw -c "write -P 0x22 1000 10" r.raw >/dev/null
_run_io --image-opts -c "read 4k 4k" -c "read 0 4k" -c "read 8k 4k" "$_bv"
_run_io --image-opts -c "read 512 2048" "$_bv"

_section "return value mismatch"
_images
_run_io -c "read 0 4k" "json:{\"driver\":\"blkverify\",\"test\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"t.qcow2\"}},\"raw\":{\"driver\":\"raw\",\"file\":{\"driver\":\"blkdebug\",\"image\":{\"driver\":\"file\",\"filename\":\"r.raw\"},\"inject-error\":[{\"event\":\"read_aio\",\"errno\":\"5\"}]}}}"
_run_io -c "write 0 4k" "json:{\"driver\":\"blkverify\",\"test\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"t.qcow2\"}},\"raw\":{\"driver\":\"raw\",\"file\":{\"driver\":\"blkdebug\",\"image\":{\"driver\":\"file\",\"filename\":\"r.raw\"},\"inject-error\":[{\"event\":\"write_aio\",\"errno\":\"28\"}]}}}"

_section "open errors"
_run_io --image-opts -c "read 0 4k" driver=blkverify,test.filename=t.qcow2
_run_io --image-opts -c "read 0 4k" driver=blkverify,raw.driver=raw,raw.file.filename=r.raw
_run_io --image-opts -c "read 0 4k" \
    driver=blkverify,raw.driver=raw,raw.file.filename=r.raw,test.filename=t.qcow2
_run_io --image-opts -c "read 0 4k" "$_bv,x=1"
_run_io -r --image-opts -c "read 0 4k" -c "write 0 4k" "$_bv"
