#!/usr/bin/env bash
# The raw format's offset/size window (QEMU 7.2's checks and messages, a fixed-size window
# cannot be resized) and the null-co/null-aio protocols (size, read-zeroes, info).
. "$(dirname "$0")/common.rc"

_raw=driver=raw,file.driver=file,file.filename=r.raw

_section "a window with offset and size"
rm -f r.raw; qemu-img create -q -f raw r.raw 1M
_run_io --image-opts -c "write -P 0x11 0 4k" -c "length" -c "read -P 0 4k 4k" -c "read 8k 512" \
    -c "write -z 4k 4k" -c "map" "$_raw,offset=4096,size=8192"
qemu-io -f raw -c "read -P 0 0 4k" -c "read -P 0x11 4k 4k" -c "read -P 0 8k 4k" r.raw |
    _filter_qemu_io
_run_io --image-opts -c "truncate 16k" "$_raw,offset=4096,size=8192"
_run_io --image-opts -c "truncate 16k" "$_raw,offset=0,size=0"
_run_io --image-opts -c "read -P 0x11 3k 1k" "$_raw,offset=1k"

_section "window errors"
rm -f r.raw; qemu-img create -q -f raw r.raw 1M
_run_io --image-opts -c "length" "$_raw,offset=4096,size=2M"
_run_io --image-opts -c "length" "$_raw,offset=2M,size=512"
_run_io --image-opts -c "length" "$_raw,offset=2M"
_run_io --image-opts -c "length" "$_raw,size=100"
_run_io --image-opts -c "length" "$_raw,offset=512,size=1048000"
_run_io --image-opts -c "length" "$_raw,offset=1M"
_run_io --image-opts -c "length" "$_raw,offset=1M,size=0"

_section "json: filename with a window"
_run_io -c "write -P 0x22 0 512" -c "length" \
    "json:{\"driver\":\"raw\",\"offset\":65536,\"size\":65536,\"file\":{\"driver\":\"file\",\"filename\":\"r.raw\"}}"
qemu-io -f raw -c "read -P 0x22 64k 512" r.raw | _filter_qemu_io

_section "null-co and null-aio"
for drv in null-co null-aio; do
    _run_io --image-opts -c "info" "driver=$drv"
    _run_io --image-opts -c "length" -c "write -P 0x11 0 4k" -c "read -P 0 0 4k" -c "map" \
        "driver=$drv,size=1M,read-zeroes=on"
    _run_io -c "length" -c "read -P 0 1M 64k" "json:{\"driver\":\"$drv\",\"size\":4194304,\"read-zeroes\":true}"
done
_run_io --image-opts -c "read -P 0 0 4k" driver=null-aio,latency-ns=1000,read-zeroes=on
