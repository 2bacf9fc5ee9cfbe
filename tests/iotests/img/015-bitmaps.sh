# Images with persistent dirty bitmaps (made by qemu-img bitmap): info lists them (human and
# JSON, including a disabled bitmap whose flag list is empty), check counts their directory,
# tables and data clusters.
. ./common.rc
qemu-img create -q -f qcow2 b.qcow2 64M
qemu-img bitmap --add b.qcow2 b0
qemu-io -c "write 0 4k" -c "write 10M 1M" b.qcow2 >/dev/null
qemu-img bitmap --add -g 512k b.qcow2 b1
qemu-img bitmap --add --disable b.qcow2 b2
qemu-io -c "write 20M 64k" b.qcow2 >/dev/null
_img info b.qcow2
_img info --output=json b.qcow2
_img check b.qcow2
_img check --output=json b.qcow2
