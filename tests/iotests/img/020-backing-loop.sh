# Backing chains that come back to an image they have passed (an image backed by itself, and
# a.qcow2 -> b.qcow2 -> a.qcow2): info --backing-chain refuses them with qemu-img 7.2's message;
# info without --backing-chain and read-write opens (the image's own write lock) behave as
# usual. The commands where qemu-img 7.2 itself never returns (read-only opens of the chain:
# map, check, convert, compare, create -b, qemu-io -r) are in qblock-002-backing-loop.
. ./common.rc
$QEMU_IMG create -q -f qcow2 self.qcow2 1M
qemu-img rebase -u -b self.qcow2 -F qcow2 self.qcow2
$QEMU_IMG create -q -f qcow2 a.qcow2 1M
$QEMU_IMG create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2
for img in self.qcow2 a.qcow2 b.qcow2; do
    _section "$img"
    _img info --backing-chain "$img"
    _img info --backing-chain --output=json "$img"
    _img info "$img" | grep -v '^disk size'
    _img resize "$img" 2M
done
