# A bitmap left IN_USE (its writer did not close the image: here the flag is set by hand,
# as a crash leaves it) is inconsistent: info shows "in-use", clear/enable/disable/merge
# refuse it with the remove hint, it is kept as it is while the others are stored, and
# --remove frees it. A table entry with reserved bits, or a misaligned data cluster, makes
# every open fail with the bitmap's name.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 u.qcow2 64M
$QEMU_IMG bitmap --add u.qcow2 b0
$QEMU_IMG bitmap --add u.qcow2 b1
head -c 64k /dev/zero | tr '\0' 'x' > d.raw
_img convert -n -f raw -O qcow2 d.raw u.qcow2
dir=$(_dir_offset u.qcow2)
_poke u.qcow2 $((dir + 12)) 00000003
_bitmaps u.qcow2
_img info u.qcow2
_img check u.qcow2
for op in clear enable disable; do _img bitmap --$op u.qcow2 b0; done
_img bitmap --merge b0 u.qcow2 b1
_img bitmap --merge b1 u.qcow2 b0
_img convert -n -f raw -O qcow2 d.raw u.qcow2
_bitmaps u.qcow2
_img bitmap --remove u.qcow2 b0
_bitmaps u.qcow2
_img check u.qcow2

_section "damaged bitmap tables"
for how in reserved misaligned allones; do
    $QEMU_IMG create -q -f qcow2 h.qcow2 64M
    $QEMU_IMG bitmap --add h.qcow2 b0
    _img convert -n -f raw -O qcow2 d.raw h.qcow2
    table=$(python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
print(struct.unpack(">Q", d[int(sys.argv[2]):int(sys.argv[2]) + 8])[0])' h.qcow2 $(_dir_offset h.qcow2))
    entry=$(od -A n -t x1 -j $table -N 8 h.qcow2 | tr -d ' ')
    case $how in
        reserved) _poke h.qcow2 $((table + 7)) 02 ;;
        misaligned) _poke h.qcow2 $((table + 6)) $(printf %02x $(( 0x${entry:12:2} + 2 ))) ;;
        allones) _poke h.qcow2 $((table + 7)) 01 ;;
    esac
    echo "--- $how"
    _img info h.qcow2
    _img check h.qcow2
    _img bitmap --clear h.qcow2 b0
    rm -f h.qcow2
done
