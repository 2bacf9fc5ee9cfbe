# Writes, write-zeroes (with and without -u) and discards on images with extended L2 entries
# (qcow2-format.md §7), made by the tool under test (qemu-io 7.2 when recording, `qblock io`
# when checking qblock): the resulting map (subcluster granularity, host offsets included),
# check and contents must be QEMU's. New clusters get only the written subclusters (COW of
# partly written ones from zeros or the backing file), the others stay unallocated; zeroes
# that do not cover whole subclusters are zeroed only where the rest reads as zeros.
. ./common.rc
case "$QEMU_IMG" in
    *qblock) QEMU_IO="$QEMU_IMG io" ;;
    *) QEMU_IO=${QEMU_IO:-qemu-io} ;;
esac
_io() { $QEMU_IO "$@" | grep -v '^wrote\|^discard\|ops/sec\|^read'; }
_show() {
    _img map --output=json $1
    _img check $1
}
truncate -s 4M base.raw
qemu-io -f raw -c 'write -P 0x77 0 4M' -c 'write -z 1M 64k' base.raw >/dev/null
for cs in 16k 32k 64k; do
    for backing in no yes; do
        _section "cluster_size=$cs, backing file: $backing"
        if [ $backing = yes ]; then
            $QEMU_IMG create -q -f qcow2 -o extended_l2=on,cluster_size=$cs -b base.raw -F raw \
                t.qcow2 4M
        else
            $QEMU_IMG create -q -f qcow2 -o extended_l2=on,cluster_size=$cs t.qcow2 4M
        fi
        # Allocating writes first (frees are applied at different times by the two tools,
        # which changes where later clusters go, not what the image holds).
        _io -c 'write -P 1 4k 4k' -c 'write -P 2 70k 1k' -c 'write -P 3 129k 1000' \
            -c 'write -P 4 256k 192k' -c 'write -P 5 258k 1k' -c 'write -P 6 1000 5000' \
            -c 'write -P 7 1020k 8k' -c 'write -c -P 8 3M 64k' t.qcow2
        _io -c 'write -z 200k 2k' -c 'write -z 300k 1k' -c 'write -z 301k 1k' \
            -c 'write -z 8k 8k' -c 'write -z 70k 512' -c 'write -z 2M 3k' -c 'write -z 1024k 1k' \
            -c 'write -z 3M 1k' t.qcow2
        _show t.qcow2
        _io -c 'write -z 320k 64k' -c 'write -z -u 384k 64k' -c 'discard 1536k 64k' \
            -c 'discard 2560k 64k' -c 'write -z -u 3M 64k' -c 'write -z -u 1M 64k' t.qcow2
        _show t.qcow2
        _io -c 'read -P 1 4k 4k' -c 'read -P 0 200k 2k' t.qcow2
        if [ $backing = yes ]; then
            _img compare -f qcow2 -F raw t.qcow2 base.raw
        fi
        _img convert -O raw t.qcow2 t.raw
        _sum t.raw
        rm -f t.qcow2 t.raw
    done
done
