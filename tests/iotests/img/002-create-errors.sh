# qemu-img create's messages and exit codes (qemu-compat.md §3.1, qcow2-format.md §15.4).
. ./common.rc
$QEMU_IMG create -q -f qcow2 b.qcow2 20M
$QEMU_IMG create -q -f raw b.raw 10M
_c() { echo "--- create $*"; _img create "$@"; rm -f x.qcow2 x.raw; }
_c -f qcow2 -o cluster_size=4k,preallocation=metadata,compat=1.1,lazy_refcounts=on,refcount_bits=8 x.qcow2 16M
_c -f qcow2 -o cluster_size=1000 x.qcow2 1M
_c -f qcow2 -o cluster_size=1000,compat=0.10,lazy_refcounts=on x.qcow2 1M
_c -f qcow2 -o compat=2 x.qcow2 1M
_c -f qcow2 -o compat=v3 x.qcow2 1M
_c -f qcow2 -o foo=1 x.qcow2 1M
_c -f qcow2 -o compat=0.10,lazy_refcounts=on x.qcow2 1M
_c -f qcow2 -o refcount_bits=3 x.qcow2 1M
_c -f qcow2 -o refcount_bits=128 x.qcow2 1M
_c -f qcow2 -o compat=v2,refcount_bits=8 x.qcow2 1M
_c -f qcow2 -o compat=0.10,compression_type=zstd x.qcow2 1M
_c -f qcow2 -o compression_type=lz4 x.qcow2 1M
_c -f qcow2 -o extended_l2=on,cluster_size=4k x.qcow2 1M
_c -f qcow2 -o compat=0.10,extended_l2=on x.qcow2 1M
_c -f qcow2 -o preallocation=bogus x.qcow2 1M
_c -f qcow2 -o preallocation=metadata -b b.qcow2 -F qcow2 x.qcow2 1M
_c -f qcow2 -o lazy_refcounts=maybe x.qcow2 1M
_c -f qcow2 -o lazy_refcounts x.qcow2 1M
_c -f qcow2 -o cluster_size=64k,cluster_size=4k x.qcow2 1M
_c -f qcow2 -o size=2M x.qcow2
_c -f qcow2 -o size=2M x.qcow2 1M
_c -f qcow2 -o backing_file=b.qcow2,backing_fmt=qcow2 x.qcow2
_c -f qcow2 -b nonexist.qcow2 -F qcow2 x.qcow2
_c -f qcow2 -u -b nonexist.qcow2 -F qcow2 x.qcow2
_c -f qcow2 -b b.raw -F qcow2 x.qcow2
_c -f qcow2 x.qcow2
_c -f qcow2 x.qcow2 1x
_c -f qcow2 x.qcow2 1.5M
_c -f qcow2 x.qcow2 1M extra
_c -f qcow2 x.qcow2 -1
_c -Z -f qcow2 x.qcow2 1M
_c -f
_c -f qcow2
_c
_c -f vmdkx x.qcow2 1M
_c -f raw -o preallocation=metadata x.raw 1M
_c -f raw -o cluster_size=4k x.raw 1M
_c -q -f qcow2 -o cluster_size=1000 x.qcow2 1M
_c -f qcow2 -o help
_c -f qcow2 -o cluster_size=64k,help x.qcow2 1M
