# Internal snapshots of an image with persistent bitmaps: create and delete keep the bitmaps
# (stored again at close, as qemu-img does), apply is refused while the image has any bitmap.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 s.qcow2 64M
$QEMU_IMG bitmap --add s.qcow2 b0
$QEMU_IMG bitmap --add --disable s.qcow2 off
head -c 64k /dev/zero | tr '\0' 'x' > d.raw
$QEMU_IMG convert -n -f raw -O qcow2 d.raw s.qcow2
_img snapshot -c s1 s.qcow2
_bitmaps s.qcow2
_img snapshot -a nope s.qcow2
_img snapshot -a s1 s.qcow2
_img snapshot -d s1 s.qcow2
_bitmaps s.qcow2
_img check s.qcow2
$QEMU_IMG bitmap --remove s.qcow2 b0
$QEMU_IMG bitmap --remove s.qcow2 off
_img snapshot -c s2 s.qcow2
_img snapshot -a s2 s.qcow2
_img check s.qcow2
