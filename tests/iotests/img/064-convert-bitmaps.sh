# convert --bitmaps copies the persistent bitmaps of a single qcow2 v3 source onto a qcow2 v3
# target after the data (same names, granularities, enabled state and dirty granules, stored
# as qemu-img stores them); its refusals, and --skip-broken-bitmaps for an inconsistent one.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 s.qcow2 64M
$QEMU_IMG bitmap --add s.qcow2 b0
$QEMU_IMG bitmap --add -g 128k --disable s.qcow2 b1
head -c 64k /dev/zero | tr '\0' 'x' > d.raw
$QEMU_IMG convert -n -f raw -O qcow2 d.raw s.qcow2
_img convert --bitmaps -O qcow2 s.qcow2 t.qcow2
_bitmaps t.qcow2
_img check t.qcow2
_img compare s.qcow2 t.qcow2
_img convert --bitmaps -O raw s.qcow2 t.raw
_img convert --bitmaps -O qcow2 -o compat=0.10 s.qcow2 v2.qcow2
_img convert --bitmaps -f raw -O qcow2 d.raw r.qcow2
_img convert --bitmaps -O qcow2 s.qcow2 s.qcow2 two.qcow2
cp s.qcow2 i.qcow2
dir=$(_dir_offset i.qcow2)
_poke i.qcow2 $((dir + 12)) 00000003
_img convert --bitmaps -O qcow2 i.qcow2 i1.qcow2
_img convert --bitmaps --skip-broken-bitmaps -O qcow2 i.qcow2 i2.qcow2
_bitmaps i2.qcow2
_img check i2.qcow2
