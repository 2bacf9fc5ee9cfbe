# Extended L2 entries (qcow2-format.md §7) on the read side: create's layouts for every cluster
# size (byte identity), info, measure and check of such images, and map (text and json) of
# images qemu-io wrote at subcluster granularity, with and without a backing file; reads
# through compare and convert to raw. check of damaged subcluster bitmaps.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_poke() { printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none; }

_section "create"
for cs in 16k 32k 64k 128k 2M; do
    _img create -f qcow2 -o extended_l2=on,cluster_size=$cs c.qcow2 1G
    _sum c.qcow2
    rm -f c.qcow2
done
truncate -s 4M base.raw
_img create -f qcow2 -o extended_l2=on -b base.raw -F raw c.qcow2 4M
_sum c.qcow2
_img create -f qcow2 -o extended_l2=on,preallocation=metadata -b base.raw -F raw p.qcow2 4M
_sum p.qcow2
_img create -f qcow2 -o extended_l2=on,preallocation=metadata q.qcow2 4M
_sum q.qcow2
_img map --output=json p.qcow2
_img map --output=json q.qcow2
_img check p.qcow2
_img info c.qcow2
_img info --output=json q.qcow2

_section "images written by qemu-io"
$QEMU_IO -f raw -c 'write -P 7 0 4M' base.raw >/dev/null
$QEMU_IMG create -q -f qcow2 -o extended_l2=on e.qcow2 4M
_io -c 'write -P 1 4k 4k' -c 'write -P 2 70k 1k' -c 'write -z 200k 2k' -c 'write -z 300k 1k' \
    -c 'write -P 3 1M 192k' -c 'write -z -u 1056k 64k' -c 'discard 2M 64k' \
    -c 'write -c -P 4 3M 64k' e.qcow2
$QEMU_IMG create -q -f qcow2 -o extended_l2=on,cluster_size=128k -b base.raw -F raw o.qcow2
_io -c 'write -P 1 4k 4k' -c 'write -P 2 70k 1k' -c 'write -z 200k 2k' -c 'write -z -u 300k 8k' \
    -c 'discard 1M 128k' -c 'write -P 5 2M 6k' o.qcow2
for f in e.qcow2 o.qcow2; do
    _section "$f"
    _img map $f
    _img map --output=json $f
    _img check $f
    _img check --output=json $f
    _img measure -O qcow2 $f
    _img measure -O qcow2 -o extended_l2=on,cluster_size=32k $f
    _img compare $f base.raw
    _img convert -O raw $f out.raw
    _sum out.raw
    _img map --output=json --start-offset=68k --max-length=8k $f
done

_section "damaged bitmaps"
# e.qcow2's L2 table is at 0x40000 (64 KiB clusters): entry 0 maps guest cluster 0 with
# subcluster 2 and 3 allocated. Mark subcluster 2 zero as well, then give an unallocated
# cluster (entry 5) an allocation bit, then a compressed cluster a bitmap.
cp e.qcow2 d.qcow2
_poke d.qcow2 0x40008 00000004
_img check d.qcow2
_img map d.qcow2
cp e.qcow2 d.qcow2
_poke d.qcow2 0x4005c 00000001
_img check d.qcow2
cp e.qcow2 d.qcow2
_poke d.qcow2 0x4030c 00000001
_img check d.qcow2
