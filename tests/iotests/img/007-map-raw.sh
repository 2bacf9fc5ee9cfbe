# qemu-img map on raw files: sparse, written, fully allocated, a length that is not a multiple of 4k
# (§3.4; qblock keeps the exact length of a raw file that is not a multiple of 512 bytes, where
# 7.2 rounds it up, so such a file is not tested here).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
truncate -s 1M sparse.raw
truncate -s 4M written.raw
_io -f raw -c 'write -P 1 0 64k' -c 'write -P 2 1M 192k' -c 'write -P 3 3M 1M' written.raw
head -c 1048576 /dev/zero > full.raw
truncate -s 100352 odd.raw
_io -f raw -c 'write -P 4 64k 4k' odd.raw
for f in sparse.raw written.raw full.raw odd.raw; do
    _section "$f"
    _img map -f raw $f
    _img map -f raw --output=json $f
done
_section "probed, windows"
_img map --output=json written.raw
_img map --output=json -f raw --start-offset=1100k --max-length=2M written.raw
_img map -f raw --start-offset=512k written.raw
