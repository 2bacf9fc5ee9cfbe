# qemu-img convert -c with the copy options: -m and -W (in-order and out-of-order writes),
# several sources (the last one's size not a cluster multiple), a backing file for the target (-B),
# an existing target (-n), -p, compressed sources, and -m's range (qemu-compat.md §3.5).
. ./convert.rc
. ./common.rc
# Full judge (in-order writes: the layout is qemu-img's): check with its figures, map, compare.
_judge() {
    local src=$1 dst=$2; shift 2
    $REF check "$dst" 2>&1 | grep -v '^No errors'
    $QEMU_IO -r -c map "$dst"
    $REF compare "$@" "$src" "$dst"
}
# Out-of-order writes (-W) place the clusters in completion order: consistency and content.
_judge_w() {
    local src=$1 dst=$2; shift 2
    $REF check -q "$dst" && echo "check: ok"
    $REF check "$dst" | grep -o '[0-9.]*% compressed clusters'
    $REF compare "$@" "$src" "$dst"
}

truncate -s 6M s.raw
_text alpha 60000 | dd of=s.raw conv=notrunc status=none
_io -f raw -c 'write -P 0 1M 256k' -c 'write -P 7 2M 4k' -c 'write -P 0 2052k 60k' s.raw
# qemu-img 7.2 mixes up a cluster that straddles two sources (compare finds a mismatch), so
# the first source is a whole number of clusters here (tests/interop/convert_compressed.sh
# covers the other sizes).
truncate -s 131072 p1.raw
_text p1 1500 | dd of=p1.raw conv=notrunc status=none
truncate -s 70000 p2.raw
_text p2 500 | dd of=p2.raw bs=1 seek=30000 conv=notrunc status=none
$REF create -q -f qcow2 base.qcow2 2M
_io -c 'write -P 1 0 2M' base.qcow2
$REF create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 2 512k 64k' -c 'write -z 768k 64k' -c 'write -P 3 1M 4k' top.qcow2

_section "-m and -W"
_conv -c -m 1 -O qcow2 s.raw m1.qcow2
_judge s.raw m1.qcow2
_conv -c -m 16 -O qcow2 s.raw m16.qcow2
_judge s.raw m16.qcow2
_conv -c -m 8 -W -O qcow2 s.raw w8.qcow2
_judge_w s.raw w8.qcow2
_conv -c -m 16 -W -O qcow2 -o compression_type=zstd s.raw w16.qcow2
_judge_w s.raw w16.qcow2
_conv -c -W -O qcow2 -o cluster_size=4k s.raw w4k.qcow2
_judge_w s.raw w4k.qcow2
_conv -c -m 0 -O qcow2 s.raw bad.qcow2
_conv -c -m 17 -O qcow2 s.raw bad.qcow2
_conv -c -m x -O qcow2 s.raw bad.qcow2

_section "several sources"
cat p1.raw s.raw p2.raw > all.raw
_conv -c -O qcow2 p1.raw s.raw p2.raw multi.qcow2
_judge all.raw multi.qcow2 -f raw
_conv -c -O qcow2 -o cluster_size=512 p1.raw p2.raw multi512.qcow2
cat p1.raw p2.raw > p12.raw
_judge p12.raw multi512.qcow2 -f raw

_section "backing files and existing targets"
_conv -c -O qcow2 top.qcow2 flat.qcow2
_judge top.qcow2 flat.qcow2
_conv -c -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 ov.qcow2
_judge top.qcow2 ov.qcow2
$REF info ov.qcow2 | grep '^backing'
$REF create -q -f qcow2 n.qcow2 6M
_conv -c -n -O qcow2 s.raw n.qcow2
_judge s.raw n.qcow2
$REF create -q -f qcow2 -o compression_type=zstd nz.qcow2 6M
_conv -c -n -O qcow2 s.raw nz.qcow2
_judge s.raw nz.qcow2
$REF info nz.qcow2 | grep 'compression type'

_section "progress and compressed sources"
_conv -c -p -O qcow2 s.raw prog.qcow2
_judge s.raw prog.qcow2
_conv -c -O qcow2 -o compression_type=zstd m1.qcow2 again.qcow2
_judge s.raw again.qcow2
_conv -O raw -W -m 16 again.qcow2 again.raw
$REF compare -f raw -F raw s.raw again.raw
