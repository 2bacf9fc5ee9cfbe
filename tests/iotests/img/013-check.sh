# qemu-img check on clean images and on images with leaks and corruptions poked into them:
# diagnostics, summaries (human and JSON), exit codes, -r leaks / -r all repairs, and the state
# the repair leaves (re-checked). Layout of the base image (64 KiB clusters): header 0,
# reftable 1, refblock 2, L1 3, L2 4, data 5 (guest 0) and 6 (guest 1M).
. ./common.rc
qemu-img create -q -f qcow2 base.qcow2 64M
qemu-io -c "write 0 64k" -c "write 1M 4k" base.qcow2 >/dev/null
# _poke NAME OFFSET BYTES...: a copy of base.qcow2 with bytes overwritten.
_poke() {
    local name=$1; shift
    cp base.qcow2 "$name.qcow2"
    while [ $# -gt 0 ]; do
        printf "$2" | dd of="$name.qcow2" bs=1 seek=$(($1)) conv=notrunc status=none
        shift 2
    done
}
# _check NAME: check, check --output=json, and both repair modes on fresh copies; after a
# repair the image is checked again.
_check() {
    local name=$1 r o
    for r in "" "-r leaks" "-r all"; do
        for o in human json; do
            cp "$name.qcow2" t.qcow2
            echo "--- check $r --output=$o ($name)"
            _img check $r --output=$o t.qcow2
            if [ -n "$r" ] && [ $o = human ]; then
                echo "--- re-check"
                _img check t.qcow2
            fi
        done
    done
}
_section clean image
cp base.qcow2 clean.qcow2
_check clean
_img check -q clean.qcow2
_section leak: refcount of cluster 6 raised to 2
_poke leak 0x2000c '\x00\x02'
_check leak
_section trailing leak: an extra cluster at the end with refcount 1
_poke trail 0x2000e '\x00\x01'
truncate -s $((8 * 65536)) trail.qcow2
_check trail
_section corruption: refcount of data cluster 5 is 0
_poke zero5 0x2000a '\x00\x00'
_check zero5
_section corruption: refcount of the L2 table is 0
_poke zero4 0x20008 '\x00\x00'
_check zero4
_section COPIED flag missing on a data cluster and on the L2 table
_poke nocopied 0x40000 '\x00'
_check nocopied
_poke l1nocopied 0x30000 '\x00'
_check l1nocopied
_section a cluster referenced twice
_poke shared 0x40085 '\x05'
_check shared
_section unaligned data cluster offset
_poke unaligned 0x40006 '\x2a'
_check unaligned
_section L2 entry past the end of the file
_poke past 0x40085 '\x20'
_check past
_section refcount block outside the image
_poke outside 0x10005 '\x30'
_check outside
_section refcount table entry 0 cleared
_poke noblock 0x10005 '\x00'
_check noblock
_section unaligned refcount block
_poke misaligned 0x10006 '\x02'
_check misaligned
_section compressed, zero and discarded clusters
qemu-img create -q -f qcow2 mixed.qcow2 64M
qemu-io -c "write -c 0 64k" -c "write -c -P 5 64k 64k" -c "write 1M 64k" -c "write -z 1M 64k" \
    -c "write 2M 64k" -c "write -z -u 2M 64k" -c "write 3M 64k" -c "write 5M 64k" \
    -c "discard 3M 64k" mixed.qcow2 >/dev/null
_check mixed
_section dirty image with lazy refcounts
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 64M
# (abort leaves the dirty bit set, as a crash would)
sh -c 'qemu-io -c "write 0 64k" -c "write 1M 64k" -c abort dirty.qcow2' >/dev/null 2>&1
for o in human json; do _img check --output=$o dirty.qcow2; done
cp dirty.qcow2 t.qcow2
_img check -r all t.qcow2
_img info t.qcow2 | grep -c "cleanly shut down"
_img check t.qcow2
_section errors
qemu-img create -q -f raw raw.img 1M
_img check raw.img
_img check -r foo base.qcow2
_img check --output=xml base.qcow2
_img check missing.qcow2
_img check
_img check -f raw base.qcow2
_section other layouts: refcount table entry 0 cleared, and a leak
for opts in compat=0.10 cluster_size=4k,refcount_bits=1 cluster_size=512,refcount_bits=64 \
    cluster_size=2M,refcount_bits=8; do
    echo "--- $opts"
    qemu-img create -q -f qcow2 -o $opts layout.qcow2 64M
    qemu-io -c "write 0 64k" -c "write 8M 4k" -c "write 32M 512" layout.qcow2 >/dev/null
    cs=$(qemu-img info --output=json layout.qcow2 | sed -n 's/.*"cluster-size": \([0-9]*\).*/\1/p')
    cp layout.qcow2 t.qcow2
    truncate -s $(( $(stat -c %s t.qcow2) + cs )) t.qcow2
    _img check t.qcow2
    printf '\x00\x00\x00\x00\x00\x00\x00\x00' | dd of=layout.qcow2 bs=1 seek=$cs conv=notrunc status=none
    cp layout.qcow2 t.qcow2
    _img check t.qcow2
    _img check -r all t.qcow2
    _img check t.qcow2
done
