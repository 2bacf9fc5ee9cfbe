# convert to and from images with extended L2 entries (qcow2-format.md §7): zero runs inside
# data become unallocated subclusters (byte-identical targets for 16k/64k clusters), with -B,
# with -c, back to standard qcow2 and raw; amend refuses to change extended_l2 either way.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
$QEMU_IMG create -q -f qcow2 src.qcow2 4M
$QEMU_IO -c 'write -P 1 0 1M' -c 'write -P 2 1100k 3k' -c 'write -z 2M 64k' \
    -c 'write -P 3 3M 4k' src.qcow2 >/dev/null
for o in extended_l2=on extended_l2=on,cluster_size=16k extended_l2=on,cluster_size=32k; do
    _section "convert -o $o"
    _img convert -O qcow2 -o $o src.qcow2 x.qcow2
    _sum x.qcow2
    _img map --output=json x.qcow2
    _img check x.qcow2
    _img convert -O qcow2 -o $o -B src.qcow2 -F qcow2 x.qcow2 y.qcow2
    _sum y.qcow2
    _img map --output=json y.qcow2
    _img convert -O qcow2 x.qcow2 z.qcow2
    _sum z.qcow2
    _img convert -O raw x.qcow2 z.raw
    _sum z.raw
    _img convert -c -O qcow2 -o $o x.qcow2 c.qcow2
    _img map --output=json c.qcow2
    _img compare x.qcow2 c.qcow2
    rm -f x.qcow2 y.qcow2 z.qcow2 z.raw c.qcow2
done

_section "amend"
$QEMU_IMG create -q -f qcow2 -o extended_l2=on e.qcow2 1M
$QEMU_IMG create -q -f qcow2 s.qcow2 1M
_img amend -o extended_l2=off e.qcow2
_img amend -o extended_l2=on e.qcow2
_img amend -o extended_l2=on s.qcow2
_img amend -o compat=0.10 e.qcow2
_img amend -o lazy_refcounts=on e.qcow2
_img info e.qcow2
_img amend -o refcount_bits=8 e.qcow2
_img check e.qcow2
_img measure -O qcow2 -o extended_l2=on e.qcow2
