# LUKS-encrypted qcow2 images with an external data file (qcow2-format.md §9, §10): the
# cluster's host offset, which gives the IV, is its guest offset in the data file. Images
# qemu-img created and qemu-io wrote, with standard and extended L2 entries, read back by
# compare, convert, map, check and info of the tool under test; then images the tool under
# test creates and writes, read back by its io and compare.
. ./crypt.rc
. ./common.rc
case "$QEMU_IMG" in
    *qblock) QEMU_IO="$QEMU_IMG io" ;;
    *) QEMU_IO=${QEMU_IO:-qemu-io} ;;
esac
E() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }
w=(-c 'write -P 0x5a 0 64k' -c 'write -P 0x11 100k 3000' -c 'write -z 512k 64k'
   -c 'write -z 700k 4k' -c 'discard 192k 64k' -c 'write -P 0x22 900k 1')
qemu-img create -q -f qcow2 plain.qcow2 1M
qemu-io "${w[@]}" plain.qcow2 >/dev/null
for ext in off on; do
    o=encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,extended_l2=$ext
    qemu-img create -q -f qcow2 $S -o $o,data_file=q-$ext.raw q-$ext.qcow2 1M
    qemu-io $S --image-opts "${w[@]}" "$(E q-$ext.qcow2)" >/dev/null
done

for ext in off on; do
    _section "read what QEMU wrote (extended_l2=$ext)"
    _img compare $S --image-opts "$(E q-$ext.qcow2)" "driver=qcow2,file.filename=plain.qcow2"
    _img convert $S --image-opts "$(E q-$ext.qcow2)" -O raw out.raw
    qemu-img convert -O raw plain.qcow2 ref.raw
    cmp out.raw ref.raw && echo identical
    _img map $S --image-opts "$(E q-$ext.qcow2)"
    _img check $S --image-opts "$(E q-$ext.qcow2)"
    _img info $S --image-opts "$(E q-$ext.qcow2)" | grep -v '^disk size' | grep -v 'uuid\|salt\|digest\|offset:\|iters:'
    echo "data file: $(stat -c %s q-$ext.raw) bytes"
done

for ext in off on; do
    _section "the tool under test writes (extended_l2=$ext)"
    rm -f t.qcow2 t.raw
    _imgr create -q -f qcow2 $S \
        -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,extended_l2=$ext,data_file=t.raw \
        t.qcow2 1M
    $QEMU_IO $S --image-opts "${w[@]}" "$(E t.qcow2)" | grep -v 'ops/sec'
    $QEMU_IO $S --image-opts -c 'read -P 0x5a 0 64k' -c 'read -P 0x11 100k 3000' \
        -c 'read -P 0 512k 64k' -c 'read -P 0x22 900k 1' "$(E t.qcow2)" | grep -v 'ops/sec'
    _img compare $S --image-opts "$(E t.qcow2)" "driver=qcow2,file.filename=plain.qcow2"
    _img check $S --image-opts "$(E t.qcow2)"
    echo "data file: $(stat -c %s t.raw) bytes"
    cmp -s t.raw ref.raw || echo "the data file holds ciphertext"
done
