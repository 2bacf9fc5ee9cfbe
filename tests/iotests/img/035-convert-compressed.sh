# qemu-img convert -c: compressed qcow2 targets with zlib and zstd, cluster sizes, all-zero
# clusters left unallocated (compressed too with -S 0), clusters that do not shrink stored
# uncompressed, the image's last partial cluster, and the refusals (qemu-compat.md §3.5).
# Judged by qemu-img: check (with its compressed-cluster figures), compare and qemu-io's map.
. ./convert.rc
. ./common.rc
# The judge: a consistent image (its allocation and compression figures and end offset), the
# source's content, and where the data is.
_judge() {
    local src=$1 dst=$2; shift 2
    if [ "${dst##*.}" = qcow2 ]; then
        $REF check "$dst" 2>&1 | grep -v '^No errors'
        $QEMU_IO -r -c map "$dst"
    fi
    $REF compare "$@" "$src" "$dst"
}
# $1 bytes of reproducible noise.
_noise() {
    head -c "$1" /dev/zero | openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f \
        -iv 00000000000000000000000000000000 2>/dev/null
}

truncate -s 4M s.raw
_text alpha 3000 | dd of=s.raw conv=notrunc status=none
head -c 65536 /dev/zero | tr '\0' '\1' | dd of=s.raw bs=64k seek=4 conv=notrunc status=none
_noise 131072 | dd of=s.raw bs=64k seek=6 conv=notrunc status=none
_io -f raw -c 'write -P 0 512k 128k' -c 'write -P 9 1M 4k' -c 'write -P 0 2M 64k' s.raw
_text beta 2000 | dd of=s.raw bs=1k seek=3000 conv=notrunc status=none
truncate -s 1000000 odd.raw
_text gamma 1000 | dd of=odd.raw bs=1 seek=900000 conv=notrunc status=none
$REF create -q -f qcow2 a.qcow2 4M
_io -c 'write -P 3 0 192k' -c 'write -z 192k 64k' -c 'write -P 4 1M 8k' -c 'write -c -P 5 2M 64k' a.qcow2

_section "zlib (the default) and zstd"
_conv -c -O qcow2 s.raw z1.qcow2
_judge s.raw z1.qcow2
$REF info z1.qcow2 | grep 'compression type'
_conv -c -O qcow2 -o compression_type=zlib s.raw z2.qcow2
_judge s.raw z2.qcow2
_conv -c -O qcow2 -o compression_type=zstd s.raw zs.qcow2
_judge s.raw zs.qcow2
$REF info zs.qcow2 | grep 'compression type'
_conv -c -O qcow2 -o compression_type=zstd a.qcow2 za.qcow2
_judge a.qcow2 za.qcow2

_section "cluster sizes and the last partial cluster"
_conv -c -O qcow2 -o cluster_size=4k s.raw c4.qcow2
_judge s.raw c4.qcow2
_conv -c -O qcow2 -o cluster_size=2M,compression_type=zstd s.raw c2m.qcow2
_judge s.raw c2m.qcow2
_conv -c -O qcow2 odd.raw odd.qcow2
_judge odd.raw odd.qcow2
_conv -c -O qcow2 -o cluster_size=512,compression_type=zstd odd.raw odd512.qcow2
_judge odd.raw odd512.qcow2

_section "-S 0: every cluster compressed"
_conv -c -S 0 -O qcow2 s.raw s0.qcow2
_judge s.raw s0.qcow2
_conv -c -S 0 -O qcow2 -o compression_type=zstd a.qcow2 s0a.qcow2
_judge a.qcow2 s0a.qcow2

_section "compressed images read back"
_conv -O raw zs.qcow2 back.raw
_judge s.raw back.raw -f raw -F raw
_conv -O raw z1.qcow2 back1.raw
_judge s.raw back1.raw -f raw -F raw
_conv -O qcow2 zs.qcow2 plain.qcow2
_judge s.raw plain.qcow2

_section "refusals"
_conv -c -O raw s.raw r.raw
_conv -c s.raw r2.raw
_conv -c -O raw -o preallocation=full s.raw r3.raw
_conv -c -O raw -B s.raw -F raw s.raw r4.raw
_conv -c -O qcow2 -o preallocation=metadata s.raw p.qcow2
_conv -c -O qcow2 -o preallocation=full s.raw p.qcow2
_conv -c -O qcow2 -o compression_type=lz4 s.raw p.qcow2
_conv -c -O qcow2 -o compat=0.10,compression_type=zstd s.raw p.qcow2
_conv -c -O qcow2 -o foo=1 s.raw p.qcow2
ls p.qcow2 r.raw r2.raw r3.raw r4.raw 2>&1
