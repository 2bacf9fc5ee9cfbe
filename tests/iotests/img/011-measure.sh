# qemu-img measure: sizes for qcow2 and raw targets from --size (cluster sizes, refcount widths,
# extended L2, preallocation) and from existing images (sparse, with data, backing chains, raw
# sources), human and JSON output, and the error messages (qemu-compat.md §3.7).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
REF=qemu-img
_io() { $QEMU_IO "$@" >/dev/null; }
_measure() {
    echo "--- measure $*"
    _img measure "$@"
}

$REF create -q -f qcow2 a.qcow2 64M
_io -c 'write 0 64k' -c 'write 1M 64k' -c 'write -z 2M 64k' -c 'write 10M 100k' a.qcow2
$REF create -q -f qcow2 empty.qcow2 1G
$REF create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
_io -c 'write 0 4k' v2.qcow2
$REF create -q -f qcow2 -b a.qcow2 -F qcow2 top.qcow2
_io -c 'write 20M 64k' top.qcow2
$REF create -q -f qcow2 odd.qcow2 1000000
_io -c 'write 990000 10000' odd.qcow2
truncate -s 10M r.raw
_io -f raw -c 'write 0 1k' -c 'write 5M 200k' r.raw
truncate -s 1000 tiny.raw
$REF create -q -f qcow2 -o cluster_size=4k,preallocation=metadata pre.qcow2 8M

_section "--size"
for size in 0 1 511 1000000 64M 1G 100G 1T 16T; do
    _measure --size $size -O qcow2
done
_measure --size 1G
_measure --size 1000001 -O raw
_measure --size 1G -O qcow2 --output=json
_measure --size 1G --output=json
_measure --size 1G -O qcow2 --output=human
for cs in 512 4k 64k 128k 2M; do
    for rb in 1 8 16 64; do
        _measure --size 5G -O qcow2 -o cluster_size=$cs,refcount_bits=$rb
    done
done
_measure --size 1G -O qcow2 -o cluster_size=128k,extended_l2=on
_measure --size 10G -O qcow2 -o cluster_size=32k,extended_l2=on,refcount_bits=2
for p in off metadata falloc full; do
    _measure --size 16M -O qcow2 -o preallocation=$p
    _measure --size 16M -O raw -o preallocation=$p
done
_measure --size 1G -O qcow2 -o compat=0.10,lazy_refcounts=on
_measure --size 1G -O qcow2 -o size=2G,backing_file=a.qcow2,compression_type=zstd
_measure --size 128G -O qcow2 -o cluster_size=512

_section "existing images"
_measure a.qcow2
_measure -O qcow2 a.qcow2
_measure -O qcow2 --output=json a.qcow2
_measure -O raw -f qcow2 --output=json a.qcow2
_measure -O qcow2 -o cluster_size=4k a.qcow2
_measure -O qcow2 -o cluster_size=2M,refcount_bits=1 a.qcow2
_measure -O qcow2 -o preallocation=full a.qcow2
_measure -O qcow2 -o preallocation=metadata a.qcow2
_measure -O qcow2 empty.qcow2
_measure -O qcow2 v2.qcow2
_measure -O qcow2 --output=json v2.qcow2
_measure -O qcow2 top.qcow2
_measure -O qcow2 odd.qcow2
_measure -O qcow2 -o cluster_size=4k odd.qcow2
_measure -O raw odd.qcow2
_measure -O qcow2 r.raw
_measure -O qcow2 -f raw -o cluster_size=512 r.raw
_measure -O raw tiny.raw
_measure -O qcow2 tiny.raw
_measure -O qcow2 pre.qcow2
_measure -O qcow2 --image-opts driver=qcow2,file.filename=a.qcow2
_measure -O qcow2 -U a.qcow2

_section "errors"
_measure
_measure -O qcow2
_measure a.qcow2 top.qcow2
_measure --size 1G a.qcow2
_measure -f raw --size 1G
_measure --size abc
_measure --size -1
_measure --size 9E
_measure --size 8E -O raw
_measure --size 1G --output=xml
_measure --size 1G -O bogus
_measure -O bogus nofile
_measure nofile
_measure -f qcow2 r.raw
_measure -f bogus a.qcow2
_measure --image-opts -f qcow2 a.qcow2
_measure --size 1G -O qcow2 -o foo=1
_measure --size 1G -O raw -o cluster_size=4k
_measure --size 1G -O qcow2 -o help
_measure --size 1G -O qcow2 -o cluster_size=abc
_measure --size 1G -O qcow2 -o extended_l2=maybe
_measure --size 1G -O qcow2 -o refcount_bits=abc
_measure --size 1G -O qcow2 -o cluster_size=1000
_measure --size 1G -O qcow2 -o cluster_size=4k,extended_l2=on
_measure --size 1G -O qcow2 -o compat=2
_measure --size 1G -O qcow2 -o compat=v3
_measure --size 1G -O qcow2 -o refcount_bits=3
_measure --size 1G -O qcow2 -o refcount_bits=128
_measure --size 1G -O qcow2 -o compat=0.10,refcount_bits=8
_measure --size 1G -O qcow2 -o preallocation=bogus
_measure --size 1G -O qcow2 -o compat=5,refcount_bits=3,cluster_size=1000
_measure --size 1G -O qcow2 -o compat=0.10,refcount_bits=8,preallocation=foo
_measure --size 1G -O qcow2 -o cluster_size=512,preallocation=foo
_measure --size 131073M -O qcow2 -o cluster_size=512
_measure --size 1G -O raw -o preallocation=foo
