# qemu-img resize of a qcow2 image over a backing file: growing past the old end must not
# expose what the backing file has there. Over a backing file longer than the old size, qemu-img
# 7.2 makes the new whole clusters zero clusters and COWs the old last cluster with zeros after
# the old end; a v2 image (no zero clusters) is refused and left as it was. Over a shorter
# backing file nothing needs zeroing. qemu-img and qemu-io (not $QEMU_IMG) judge each result;
# md5 sums show byte identity with qemu-img's own result.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
_map() { echo "--- map $1"; qemu-img map --output=json "$1" 2>&1 | sed 's/, "offset": [0-9]*//'; }
_read() { echo "--- read $*"; qemu-io -f qcow2 -r "$@" | grep -v '^[0-9.]* [KMG]*i*B, \|^read [0-9]'; }
_vsize() { echo "$1: virtual size $(qemu-img info --output=json "$1" | sed -n 's/.*"virtual-size": \([0-9]*\).*/\1/p')"; }

$QEMU_IMG create -q -f qcow2 base.qcow2 1M
_io -c 'write -P 0xaa 0 1M' base.qcow2
$QEMU_IMG create -q -f qcow2 short.qcow2 256k
_io -c 'write -P 0xbb 0 256k' short.qcow2

_section "shrink inside a cluster, then grow back"
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 1M
_img resize --shrink t.qcow2 300032
_img resize t.qcow2 1M
_vsize t.qcow2
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xaa 0 300032' -c 'read -P 0 300032 748544' t.qcow2
_sum t.qcow2

_section "grow a short overlay past its old end"
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 300032
_img resize t.qcow2 2M
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xaa 0 300032' -c 'read -P 0 300032 1796608' t.qcow2
_sum t.qcow2

_section "grow at a cluster boundary, with data in the overlay"
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 256k
_io -c 'write -P 0x11 192k 64k' t.qcow2
_img resize t.qcow2 +512k
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xaa 0 192k' -c 'read -P 0x11 192k 64k' -c 'read -P 0 256k 512k' t.qcow2
_sum t.qcow2

_section "grow within the old last cluster"
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 t.qcow2 300032
_img resize t.qcow2 310272
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xaa 0 300032' -c 'read -P 0 300032 10240' t.qcow2
_sum t.qcow2

_section "grow far: the L1 table grows too"
$QEMU_IMG create -q -f qcow2 -o cluster_size=4096 -b base.qcow2 -F qcow2 t.qcow2 300032
_img resize t.qcow2 3G
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xaa 0 300032' -c 'read -P 0 300032 748544' -c 'read -P 0 3220176896 4096' t.qcow2
_sum t.qcow2

_section "a backing file shorter than the old size"
$QEMU_IMG create -q -f qcow2 -b short.qcow2 -F qcow2 t.qcow2 512k
_img resize t.qcow2 2M
_check t.qcow2
_map t.qcow2
_read -c 'read -P 0xbb 0 256k' -c 'read -P 0 256k 1792k' t.qcow2
_sum t.qcow2

_section "a v2 image cannot zero the new area"
$QEMU_IMG create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 t.qcow2 300032
_img resize t.qcow2 2M
_vsize t.qcow2
_check t.qcow2
_sum t.qcow2
$QEMU_IMG create -q -f qcow2 -o compat=0.10 -b short.qcow2 -F qcow2 t.qcow2 512k
_img resize t.qcow2 2M
_vsize t.qcow2
_check t.qcow2
_sum t.qcow2
