# qblock create writes the same bytes as qemu-img create (qcow2-format.md §15, §16).
. ./common.rc
_mk() { local size=$1; shift; _img create -f qcow2 "$@" t.qcow2 $size; _sum t.qcow2; rm -f t.qcow2; }
_section "cluster sizes"
_mk 64M
_mk 1G
_mk 8T
_mk 1G -o cluster_size=4k
_mk 1G -o cluster_size=512
_mk 1G -o cluster_size=2M
_mk 1G -o extended_l2=on,cluster_size=128k
_section "compat, features, refcount widths"
_mk 1M -o compat=0.10
_mk 1G -o lazy_refcounts=on
for r in 1 2 4 8 32 64; do _mk 1G -o refcount_bits=$r; done
_mk 1G -o compression_type=zstd
_mk 0
_mk 1000
_section "backing files"
$QEMU_IMG create -q -f qcow2 b.qcow2 20M
$QEMU_IMG create -q -f raw b.raw 10M
_mk "" -b b.qcow2 -F qcow2
_mk 1G -b b.raw -F raw
_mk "" -b b.raw -F raw
_mk 1M -u -b missing.qcow2 -F qcow2
_section "preallocation"
_mk 16M -o preallocation=metadata
_mk 1G -o preallocation=metadata
_mk 16M -o preallocation=metadata,cluster_size=4k
_mk 1048577 -o preallocation=metadata
_mk 16M -o preallocation=falloc
_mk 16M -o preallocation=full
_mk 1M -o compat=0.10,preallocation=metadata
_section "raw"
_img create -f raw r.raw 1M; _sum r.raw
_img create r.raw 1536; _sum r.raw
_img create -f raw -o preallocation=full r.raw 64k; _sum r.raw
_img create -f raw -o preallocation=falloc r.raw 64k; _sum r.raw
