# Images with extended L2 entries (qcow2-format.md §7) through resize (growing over a backing
# file that reaches past the old end, shrinking), internal snapshots (create, write, list,
# apply, delete), commit into an extended-L2 base (qemu-img commits whole base clusters:
# its mirror's granularity) and rebase, each step's map and check as qemu-img 7.2's. Writes
# go through the tool under test (qemu-io 7.2 when recording, `qblock io` for qblock).
. ./common.rc
case "$QEMU_IMG" in
    *qblock) QEMU_IO="$QEMU_IMG io" ;;
    *) QEMU_IO=${QEMU_IO:-qemu-io} ;;
esac
_io() { $QEMU_IO "$@" | grep -v '^wrote\|ops/sec\|^discard'; }
truncate -s 4M base.raw
qemu-io -f raw -c 'write -P 0x77 0 3M' base.raw >/dev/null
$QEMU_IMG create -q -f qcow2 -o extended_l2=on,cluster_size=32k -b base.raw -F raw a.qcow2 2M
_io -c 'write -P 1 4k 4k' -c 'write -P 2 1000k 70k' -c 'write -z 1500k 2k' a.qcow2
_section "resize over the backing file"
_img resize a.qcow2 4M
_img map --output=json a.qcow2
_section "snapshots"
_img snapshot -c s1 a.qcow2
_io -c 'write -P 3 6k 2k' -c 'write -P 4 3M 5k' -c 'write -z -u 1M 64k' a.qcow2
_img check a.qcow2
_img map --output=json a.qcow2
_img snapshot -a s1 a.qcow2
_img map --output=json a.qcow2
_img snapshot -d s1 a.qcow2
_img check a.qcow2
_section "shrink"
_img resize --shrink a.qcow2 1M
_img map --output=json a.qcow2
_img check a.qcow2
_section "commit and rebase"
$QEMU_IMG create -q -f qcow2 -o extended_l2=on -b a.qcow2 -F qcow2 top.qcow2
# One base cluster (granule) per commit: qemu-img's mirror copies several at once, so where
# it places them on the host varies from run to run.
_io -c 'write -P 5 10k 3k' -c 'write -z 20k 4k' top.qcow2
_img commit top.qcow2
_img map --output=json a.qcow2
_img map --output=json top.qcow2
_img check a.qcow2
_img rebase -b base.raw -F raw top.qcow2
_img map --output=json top.qcow2
_img check top.qcow2
_img convert -O raw top.qcow2 final.raw
_sum final.raw
_section "commit of a top image with a snapshot (emptied entry by entry)"
_img snapshot -c s top.qcow2
_io -c 'write -P 7 500k 7k' -c 'write -z 510k 1k' top.qcow2
_img commit top.qcow2
_img map --output=json top.qcow2
_img check top.qcow2
_img map --output=json base.raw
