# Writes through the tool (convert -n, a resize) set the bits of every enabled bitmap and of
# no disabled one; the bitmaps are stored at close into new clusters as qemu-img stores them
# (same tables, directory and refcounts), --clear/--merge/--remove change what is stored.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 t.qcow2 64M
$QEMU_IMG bitmap --add t.qcow2 b0
$QEMU_IMG bitmap --add -g 128k t.qcow2 b1
$QEMU_IMG bitmap --add --disable t.qcow2 off
_bitmaps t.qcow2
# 64 KiB of data at 1 MiB and 4 KiB at 5 MiB, the rest zeros.
head -c 1M /dev/zero > d.raw
head -c 64k /dev/zero | tr '\0' 'a' >> d.raw
head -c $((4 * 1024 * 1024 - 64 * 1024)) /dev/zero >> d.raw
head -c 4k /dev/zero | tr '\0' 'b' >> d.raw
_img convert -n -f raw -O qcow2 d.raw t.qcow2
_bitmaps t.qcow2
_img check t.qcow2
_img compare -f raw -F qcow2 d.raw t.qcow2
_img bitmap --add --merge b0 t.qcow2 copy
_img bitmap --clear t.qcow2 b0
_bitmaps t.qcow2
_img bitmap --enable t.qcow2 off
_img resize t.qcow2 128M
_bitmaps t.qcow2
_img resize --shrink t.qcow2 32M
_bitmaps t.qcow2
_img bitmap --remove t.qcow2 b1
_img bitmap --remove t.qcow2 copy
_bitmaps t.qcow2
_img check t.qcow2
_img bitmap --remove t.qcow2 b0
_img bitmap --remove t.qcow2 off
_bitmaps t.qcow2
_img info t.qcow2
_img check t.qcow2
