# qemu-img map and compare on preallocated qcow2 images: with preallocation=metadata the data
# clusters that are holes in the file read as zero ("zero": true, "data": true) (§3.4, §3.6).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
for p in off metadata falloc full; do
    $QEMU_IMG create -q -f qcow2 -o preallocation=$p $p.qcow2 4M
    _io -c 'write -P 1 0 64k' -c 'write -P 2 1M 128k' $p.qcow2
done
$QEMU_IMG create -q -f qcow2 -o preallocation=metadata,cluster_size=4k small.qcow2 1M
_io -c 'write -P 3 8k 4k' small.qcow2
for f in metadata.qcow2 falloc.qcow2 full.qcow2 small.qcow2; do
    _section "$f"
    _img map $f
    _img map --output=json $f
done
_section "compare"
for f in metadata.qcow2 falloc.qcow2 full.qcow2; do
    _img compare off.qcow2 $f
    _img compare -s off.qcow2 $f
done
_img compare -s metadata.qcow2 metadata.qcow2
