# qemu-img resize --preallocation=metadata|falloc|full on qcow2: where the new clusters go
# (map with host offsets), what the image reads afterwards, and qemu-img check as the judge
# (qemu-compat.md §3.9). Images are written with qemu-io first so both tools start from the
# same bytes; md5 sums show byte identity with qemu-img's own result. Not here (data and check
# identical, host layout different: tests/iotests/img/README.md): metadata preallocation that
# must grow the L1 or the refcount table, or over a backing file.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
_read() { echo "--- read $*"; $QEMU_IO -c "$2" "$1" 2>&1 | grep -v '^read\|ops/sec'; }
_map() { qemu-img map --output=json "$1"; }
# _grow MODE OLD NEW [create options...] -- [qemu-io commands...]
_grow() {
    local mode=$1 old=$2 new=$3; shift 3
    local opts=() cmds=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    rm -f t.qcow2
    qemu-img create -q -f qcow2 "${opts[@]}" t.qcow2 "$old"
    for c in "$@"; do _io -c "$c" t.qcow2; done
    echo "=== $mode $old -> $new ${opts[*]} ${*:+($*)}"
    _img resize --preallocation="$mode" t.qcow2 "$new"
    _map t.qcow2
    _check t.qcow2
    _sum t.qcow2
}

_section "aligned old size"
for m in metadata falloc full; do _grow $m 1M 3M -- 'write -P 1 0 100k'; done
_read t.qcow2 'read -P 1 0 100k'
_read t.qcow2 'read -P 0 100k 2972k'

_section "old size inside a cluster"
for m in metadata falloc full; do _grow $m 100k 300k -- 'write -P 1 0 4k'; done
for m in metadata falloc full; do _grow $m 100k 300k -- 'write -P 2 70k 4k'; done
_read t.qcow2 'read -P 2 70k 4k'
_read t.qcow2 'read -P 0 74k 226k'
for m in metadata falloc; do _grow $m 100k 300k -- 'write -P 2 70k 4k' 'discard 64k 64k'; done
for m in metadata falloc; do _grow $m 100k 300k -o compat=0.10 -- 'write -P 2 70k 4k'; done

_section "new L2 tables, a larger L1 table"
for m in metadata falloc; do _grow $m 32M 96M -o cluster_size=16k -- 'write -P 3 31M 1M'; done
_read t.qcow2 'read -P 3 31M 1M'
_read t.qcow2 'read -P 0 32M 1M'
for m in falloc full; do _grow $m 64k 4M -o cluster_size=4k -- 'write -P 4 0 64k'; done

_section "refcount table growth"
_grow falloc 64k 16M -o cluster_size=512 -- 'write -P 5 0 64k'
_read t.qcow2 'read -P 5 0 64k'
_grow falloc 64k 4M -o cluster_size=512,refcount_bits=64 -- 'write -P 6 0 8k'
_grow metadata 1M 2M -o refcount_bits=1 -- 'write -P 7 0 128k'
_grow falloc 1M 2M -o refcount_bits=1 -- 'write -P 7 0 128k'

_section "compressed data before the old end"
for m in metadata falloc; do _grow $m 100k 300k -- 'write -c -P 8 0 64k' 'write -P 9 64k 4k'; done
_read t.qcow2 'read -P 8 0 64k'
_read t.qcow2 'read -P 9 64k 4k'

_section "backing file"
qemu-img create -q -f raw b.raw 1M
_io -f raw -c 'write -P 10 0 1M' b.raw
for m in falloc full; do
    rm -f t.qcow2
    qemu-img create -q -f qcow2 -b b.raw -F raw t.qcow2 128k
    echo "=== $m over a backing file"
    _img resize --preallocation=$m t.qcow2 320k
    _map t.qcow2
    _check t.qcow2
    _sum t.qcow2
    _read t.qcow2 'read -P 10 0 128k'
    _read t.qcow2 'read -P 0 128k 192k'
done

_section "errors"
qemu-img create -q -f qcow2 e.qcow2 1M
_img resize --preallocation=falloc --shrink e.qcow2 512k
_img resize --preallocation=metadata e.qcow2 1M
_img resize --preallocation=full e.qcow2 -- -64k
_img resize --preallocation=falloc e.qcow2 +1M
_map e.qcow2
_check e.qcow2
