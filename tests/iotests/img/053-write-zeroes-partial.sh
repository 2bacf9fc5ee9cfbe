# write -z requests that do not cover whole clusters on standard (not extended-L2) images, made
# by the tool under test (qemu-io 7.2 when recording, `qblock io` when checking qblock): the
# clusters QEMU turns into zero clusters (the rest of the cluster already reads as zeros) and
# the ones where it writes zero data must be the same, with and without a backing file.
. ./common.rc
case "$QEMU_IMG" in
    *qblock) QEMU_IO="$QEMU_IMG io" ;;
    *) QEMU_IO=${QEMU_IO:-qemu-io} ;;
esac
_io() { $QEMU_IO "$@" | grep -v '^wrote\|ops/sec'; }
truncate -s 4M base.raw
qemu-io -f raw -c 'write -P 0x77 0 2M' -c 'write -z 1M 64k' base.raw >/dev/null
for cs in 4k 64k 2M; do
    for backing in no yes; do
        _section "cluster_size=$cs, backing file: $backing"
        if [ $backing = yes ]; then
            $QEMU_IMG create -q -f qcow2 -o cluster_size=$cs -b base.raw -F raw t.qcow2 4M
        else
            $QEMU_IMG create -q -f qcow2 -o cluster_size=$cs t.qcow2 4M
        fi
        _io -c 'write -z 0 4k' -c 'write -z 64k 68k' -c 'write -P 1 256k 64k' \
            -c 'write -z 260k 4k' -c 'write -z 320k 32k' -c 'write -z 352k 32k' \
            -c 'write -z 1000k 100k' -c 'write -z 1030k 1k' -c 'write -c -P 2 3M 64k' \
            -c 'write -z 3M 4k' -c 'write -P 3 2500k 3k' -c 'write -z 2501k 1k' \
            -c 'write -z 2M 3k' -c 'write -z 4090k 6k' t.qcow2
        _img map --output=json t.qcow2
        _img check t.qcow2
        _img convert -O raw t.qcow2 t.raw
        _sum t.raw
        rm -f t.qcow2 t.raw
    done
done
