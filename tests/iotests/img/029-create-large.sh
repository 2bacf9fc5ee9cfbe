# qblock create of images whose refcount table must grow while they are created, and the file
# protocol's create options (extent_size_hint, nocow): same bytes and messages as qemu-img.
. ./common.rc
_mk() { local size=$1; shift; _img create -f qcow2 "$@" t.qcow2 $size; [ -e t.qcow2 ] && _sum t.qcow2; rm -f t.qcow2; }
_section "refcount table growth at create time"
_mk 64G -o cluster_size=512
_mk 100G -o cluster_size=512
_mk 128G -o cluster_size=512
_mk 200G -o cluster_size=512
_mk 16G -o cluster_size=512,refcount_bits=64
_mk 64G -o cluster_size=512,refcount_bits=1
_mk 32G -o cluster_size=1k,refcount_bits=32
_mk 64G -o cluster_size=512,compat=0.10
_section "preallocation with a growing refcount table"
_mk 64M -o cluster_size=512,preallocation=metadata
_mk 16M -o cluster_size=512,preallocation=falloc
_mk 16M -o cluster_size=512,preallocation=full
_mk 4M -o cluster_size=512,refcount_bits=64,preallocation=falloc
_mk 256M -o cluster_size=4k,refcount_bits=64,preallocation=metadata
_section "extent_size_hint and nocow"
_mk 1M -o extent_size_hint=1M
_mk 1M -o extent_size_hint=0
_mk 1M -o extent_size_hint=4294967295
_mk 1M -o extent_size_hint=4G
_mk 1M -o extent_size_hint=-1
_mk 1M -o nocow=on,extent_size_hint=64k
_mk 1M -o nocow=maybe
_img create -f raw -o extent_size_hint=1M,nocow=on,preallocation=falloc r.raw 1M; _sum r.raw
_img create -f raw -o extent_size_hint=8G r.raw 1M; ls r.raw 2>&1 | sed 's/.*cannot access.*/r.raw: absent/'
_img create -f raw -o nocow=off r.raw 64k; _sum r.raw
