# measure counts the persistent bitmaps of a qcow2 v3 source for a qcow2 target as qemu-img
# 7.2 does: each bitmap wholly allocated in target clusters, its table, the directory.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 m.qcow2 100M
_img measure -O qcow2 m.qcow2
$QEMU_IMG bitmap --add m.qcow2 b0
$QEMU_IMG bitmap --add -g 512 m.qcow2 fine
$QEMU_IMG bitmap --add -g 4k --disable m.qcow2 a-somewhat-longer-bitmap-name
for o in "" "-o cluster_size=4k" "-o cluster_size=2M" "--output=json"; do
    _img measure $o -O qcow2 m.qcow2
done
_img measure -O raw m.qcow2
$QEMU_IMG convert -O qcow2 -o compat=0.10 m.qcow2 v2.qcow2 2>/dev/null
_img measure -O qcow2 v2.qcow2
