# qemu-img info, human and JSON, with --backing-chain (qemu-compat.md §3.2).
. ./common.rc
$QEMU_IMG create -q -f qcow2 base.qcow2 20M
$QEMU_IMG create -q -f raw base.raw 10M
mkdir sub
$QEMU_IMG create -q -f qcow2 i1.qcow2 64M
$QEMU_IMG create -q -f qcow2 -o compat=0.10 i2.qcow2 1M
$QEMU_IMG create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on,refcount_bits=8 i3.qcow2 1G
$QEMU_IMG create -q -f qcow2 -o compression_type=zstd i4.qcow2 8T
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 i5.qcow2
$QEMU_IMG create -q -f qcow2 -b base.raw -F raw i6.qcow2 1G
$QEMU_IMG create -q -f qcow2 -o preallocation=metadata i7.qcow2 16M
$QEMU_IMG create -q -f qcow2 -o extended_l2=on,cluster_size=128k i8.qcow2 1G
$QEMU_IMG create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/i9.qcow2
$QEMU_IMG create -q -f qcow2 -b i5.qcow2 -F qcow2 i10.qcow2
for f in i1.qcow2 i2.qcow2 i3.qcow2 i4.qcow2 i5.qcow2 i6.qcow2 i7.qcow2 i8.qcow2 \
         sub/i9.qcow2 i10.qcow2 base.raw; do
    _section "$f"
    _img info $f
    _img info --output=json $f
done
_section "backing chains"
_img info --backing-chain i10.qcow2
_img info --backing-chain --output=json i10.qcow2
_img info --backing-chain sub/i9.qcow2
_section "explicit format, errors"
_img info -f raw i1.qcow2
_img info -f raw --output=json i1.qcow2
_img info --output=xml i1.qcow2
_img info nofile.qcow2
_img info
