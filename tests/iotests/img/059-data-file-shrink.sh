# resize --shrink of qcow2 images with an external data file (qcow2-format.md §10), with
# data_file_raw off and on, standard and extended L2 entries, and L2 tables wholly past the
# new end: the data file ends at the new size, entries past it are cleared and dropped tables
# freed; both files' bytes, map and check must be qemu-img 7.2's.
. ./common.rc
case "$QEMU_IMG" in
    *qblock) QEMU_IO="$QEMU_IMG io" ;;
    *) QEMU_IO=${QEMU_IO:-qemu-io} ;;
esac
for ext in off on; do
    for raw in off on; do
        for cs in 16k 64k; do
            _section "extended_l2=$ext data_file_raw=$raw cluster_size=$cs"
            rm -f t.qcow2 d.raw
            qemu-img create -q -f qcow2 \
                -o data_file=d.raw,data_file_raw=$raw,extended_l2=$ext,cluster_size=$cs t.qcow2 40M
            qemu-io -c 'write -P 1 0 40M' -c 'write -z 9M 1M' -c 'discard 20M 64k' t.qcow2 \
                >/dev/null
            _img resize --shrink t.qcow2 30M
            _img resize --shrink t.qcow2 300k
            _img info t.qcow2 | grep -v '^disk size'
            _img map t.qcow2
            _img check t.qcow2
            _sum t.qcow2
            _sum d.raw
            $QEMU_IO -c 'read -P 1 0 300k' t.qcow2 | grep -v ops/sec
            _img resize --shrink t.qcow2 0
            _img check t.qcow2
            _sum t.qcow2
            _sum d.raw
        done
    done
done
