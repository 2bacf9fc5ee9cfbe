# commit and rebase keep the bitmaps of the images they write true: the base's bitmaps count
# what commit copies into it, the top's are stored again; rebase's copies into the top count.
. ./bitmaps.rc
. ./common.rc
head -c 64k /dev/zero | tr '\0' 'x' > d.raw
$QEMU_IMG create -q -f qcow2 base.qcow2 64M
$QEMU_IMG bitmap --add base.qcow2 base0
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
$QEMU_IMG bitmap --add -g 128k top.qcow2 top0
$QEMU_IMG convert -n -f raw -O qcow2 d.raw top.qcow2
_img commit top.qcow2
_bitmaps base.qcow2
_bitmaps top.qcow2
_img check base.qcow2
_img check top.qcow2
$QEMU_IMG create -q -f qcow2 other.qcow2 64M
_img rebase -b other.qcow2 -F qcow2 top.qcow2
_bitmaps top.qcow2
_img check top.qcow2
