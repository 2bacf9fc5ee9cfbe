# qemu-img map through backing chains: data in the base only, in the top only, in both, zero
# clusters over data, a shorter base, a raw base, a base in another directory (§3.4).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
mkdir sub
$QEMU_IMG create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 256k' -c 'write -P 2 1M 128k' -c 'write -z 2M 64k' base.qcow2
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 6M
_io -c 'write -P 3 64k 64k' -c 'write -P 4 3M 64k' -c 'write -z 1M 64k' -c 'write -P 5 5M 64k' \
    mid.qcow2
$QEMU_IMG create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 6 128k 64k' -c 'write -z -u 192k 64k' -c 'write -P 7 4M 64k' top.qcow2
$QEMU_IMG create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/over.qcow2
truncate -s 2M base.raw
_io -f raw -c 'write -P 8 512k 64k' -c 'write -P 9 1536k 128k' base.raw
$QEMU_IMG create -q -f qcow2 -b base.raw -F raw onraw.qcow2 3M
_io -c 'write -P 10 0 64k' -c 'write -z 512k 64k' onraw.qcow2
for f in mid.qcow2 top.qcow2 sub/over.qcow2 onraw.qcow2; do
    _section "$f"
    _img map $f
    _img map --output=json $f
done
_section "window over the chain"
_img map --output=json --start-offset=96k --max-length=1M top.qcow2
_img map --output=json -f qcow2 --start-offset=5M top.qcow2
_section "missing backing file"
$QEMU_IMG create -q -u -f qcow2 -b gone.qcow2 -F qcow2 orphan.qcow2 1M
_img map orphan.qcow2
_img compare orphan.qcow2 top.qcow2
