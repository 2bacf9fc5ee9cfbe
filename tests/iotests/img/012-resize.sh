# qemu-img resize: argument and size errors, relative sizes, raw grow/shrink/preallocation,
# qcow2 grow (L1 table relocation) and --shrink with data inside and beyond the new end
# (qemu-compat.md §3.9). Images are written with qemu-io first so both tools start from the
# same bytes; qemu-img itself (not $QEMU_IMG) judges every result with check and compare,
# and md5 sums show byte identity with qemu-img's own result.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
# The judge: always QEMU's tools.
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
_compare() { echo "--- compare $*"; qemu-img compare "$@" 2>&1; echo "compare status: $?"; }
_vsize() { echo "$1: virtual size $(qemu-img info --output=json "$@" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')"; }

truncate -s 1M r.raw
$QEMU_IMG create -q -f qcow2 q.qcow2 1M

_section "arguments"
_img resize
_img resize r.raw
_img resize -f raw r.raw 1M 2M
_img resize -f raw 2M
_img resize --bogus -f raw r.raw 2M
_img resize -x -f raw r.raw 2M
_img resize -f raw --preallocation=bogus r.raw 2M
_img resize -f raw --preallocation= r.raw 2M
_img resize -f raw --preallocation r.raw 2M
_img resize --image-opts -f raw r.raw 2M
_img resize -f raw nofile.raw 2M
_img resize -f qcow2 r.raw 2M
_img resize -f bogus r.raw 2M

_section "sizes"
_img resize -f raw r.raw +
_img resize -f raw r.raw -- -
_img resize -f raw r.raw ''
_img resize -f raw r.raw 1.5
_img resize -f raw r.raw 1kb
_img resize -f raw r.raw -- +-1M
_img resize -f raw r.raw 16E
_img resize -f raw r.raw +16E
_img resize -f raw r.raw 18446744073709551616
_img resize -f raw r.raw 18446744073709551615
_img resize -f raw r.raw 8E
_img resize -f raw r.raw 0
_img resize -f raw --shrink r.raw -- -1M
_img resize -f raw --shrink r.raw -- -2M
_img resize -f raw r.raw -1M
_img resize -f raw r.raw 1k
_img resize -f raw r.raw 0x1000
_img resize -f raw --preallocation=full r.raw 512k
_img resize -f raw --preallocation=full --shrink r.raw 512k
_img resize -f raw --image-opts r.raw +
stat -c %s r.raw

_section "raw grow and shrink"
_io -f raw -c 'write -P 1 0 64k' -c 'write -P 2 1000k 24k' r.raw
_img resize -f raw r.raw 2M
_sum r.raw
_img resize -f raw r.raw +1536k
_sum r.raw
_img resize -f raw r.raw ' 4M'
_sum r.raw
_img resize -f raw r.raw +0
_img resize -f raw --shrink r.raw -- -3M
_sum r.raw
_img resize -f raw --shrink r.raw 1000
_sum r.raw
_img resize -f raw -q r.raw 1M
_sum r.raw
_img resize r.raw 2M
_sum r.raw
_img resize --image-opts driver=raw,file.filename=r.raw 3M
_img resize --image-opts driver=file,filename=r.raw 4M
_sum r.raw
_img resize --object secret,id=sec0,data=x -f raw r.raw 5M
_img resize -f raw --preallocation=off r.raw 6M
_img resize -f raw --preallocation=falloc r.raw 7M
_img resize -f raw --preallocation=full r.raw 8M
_sum r.raw
_compare -f raw -F raw r.raw r.raw

_section "qcow2 grow"
_io -c 'write -P 1 0 64k' -c 'write -P 2 960k 64k' q.qcow2
_img resize -f qcow2 q.qcow2 +1M
_vsize q.qcow2
_sum q.qcow2
_img resize q.qcow2 600M
_sum q.qcow2
_img resize -f qcow2 q.qcow2 3G
_sum q.qcow2
_img resize -f qcow2 q.qcow2 +100G
_sum q.qcow2
_check q.qcow2
_img resize -f qcow2 q.qcow2 1000G
_img resize -f qcow2 --shrink q.qcow2 1000
_img resize -f qcow2 q.qcow2 +1000
_img resize --image-opts driver=qcow2,file.filename=q.qcow2 1001G
_vsize q.qcow2
_sum q.qcow2
_check q.qcow2

# A 1 GiB image with data in both L2 ranges, allocated beyond the new end first so that freed
# clusters sit in the middle of the file; and a raw twin resized the same way.
_section "qcow2 shrink"
$QEMU_IMG create -q -f qcow2 base.qcow2 1G
_io -c 'write -P 5 900M 128k' -c 'write -P 6 0 64k' -c 'write -P 7 40M 64k' \
    -c 'write -c -P 8 41M 64k' -c 'write -z 42M 64k' -c 'write -P 9 1023M 64k' base.qcow2
truncate -s 1G base.raw
_io -f raw -c 'write -P 5 900M 128k' -c 'write -P 6 0 64k' -c 'write -P 7 40M 64k' \
    -c 'write -P 8 41M 64k' -c 'write -P 9 1023M 64k' base.raw
_compare base.qcow2 base.raw
for size in 1023M 600M 41M 41024k 20M 64k 512; do
    echo
    echo "--- shrink to $size"
    cp base.qcow2 s.qcow2
    cp base.raw s.raw
    _img resize -f qcow2 s.qcow2 $size
    _img resize -f qcow2 --shrink s.qcow2 $size
    _img resize -f raw --shrink s.raw $size
    _vsize s.qcow2
    _check s.qcow2
    _compare s.qcow2 s.raw
    _sum s.qcow2
    _sum s.raw
done

_section "qcow2 shrink, then grow and write again"
cp base.qcow2 s.qcow2
_img resize -f qcow2 --shrink s.qcow2 -- -1000M
_img resize -f qcow2 s.qcow2 +1000M
_io -c 'write -P 10 1000M 64k' -c 'write -P 11 30M 64k' s.qcow2
_check s.qcow2
_sum s.qcow2
_io -c 'read -P 10 1000M 64k' -c 'read -P 0 900M 128k' -c 'read -P 6 0 64k' -c 'read -P 11 30M 64k' \
    s.qcow2
echo "read back: $?"

_section "qcow2 shrink, 4 KiB clusters and a v2 image"
$QEMU_IMG create -q -f qcow2 -o cluster_size=4096 c4k.qcow2 64M
_io -c 'write -P 1 0 8k' -c 'write -P 2 3M 4k' -c 'write -P 3 10M 1M' -c 'write -c -P 4 20M 4k' \
    -c 'write -z 30M 8k' -c 'write -P 5 63M 4k' -c 'write -P 6 5M 4k' c4k.qcow2
$QEMU_IMG create -q -f qcow2 -o compat=0.10 v2.qcow2 256M
_io -c 'write -P 1 0 64k' -c 'write -P 2 128M 64k' -c 'write -P 3 255M 64k' v2.qcow2
for size in 31M 10752k 4M 7680; do
    cp c4k.qcow2 s.qcow2
    _img resize -f qcow2 --shrink s.qcow2 $size
    _check s.qcow2
    _sum s.qcow2
done
for size in 200M 100M; do
    cp v2.qcow2 s.qcow2
    _img resize -f qcow2 --shrink s.qcow2 $size
    _check s.qcow2
    _sum s.qcow2
done

# 4 KiB clusters: each refcount block covers 8 MiB of the file, so shrinking leaves blocks
# that count only themselves; they leave the refcount table and the file ends before them.
_section "qcow2 shrink drops unused refcount blocks"
$QEMU_IMG create -q -f qcow2 -o cluster_size=4096 rb.qcow2 64M
_io -c 'write -P 1 0 1M' -c 'write -P 2 8M 20M' rb.qcow2
for size in 4M 12M 20M; do
    cp rb.qcow2 s.qcow2
    _img resize -f qcow2 --shrink s.qcow2 $size
    _check s.qcow2
    _sum s.qcow2
    _io -c 'write -P 3 1M 2M' s.qcow2
    _check s.qcow2
    _sum s.qcow2
done
