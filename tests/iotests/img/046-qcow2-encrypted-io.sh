# Encrypted qcow2 images through the subcommands: images qemu-img created and qemu-io wrote
# (misaligned writes, zero writes, discards, a backing file) read back by compare, convert,
# map and check of the tool under test; the wrong and missing secrets.
. ./crypt.rc
. ./common.rc
E() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }
w=(-c 'write -P 0x5a 0 64k' -c 'write -P 0x11 100k 3000' -c 'write -z 512k 64k'
   -c 'write -z 700k 4k' -c 'discard 192k 64k' -c 'write -P 0x22 900k 1')
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -c 'write -P 0x77 0 1M' base.qcow2 >/dev/null
for f in luks aes; do
    o=encrypt.format=$f,encrypt.key-secret=sec0
    [ $f = luks ] && o=$o,encrypt.iter-time=10
    qemu-img create -q -f qcow2 $S -o $o q-$f.qcow2 1M
    qemu-img create -q -f qcow2 $S -o $o,cluster_size=4k -b base.qcow2 -F qcow2 b-$f.qcow2
    qemu-io $S --image-opts "${w[@]}" "$(E q-$f.qcow2)" >/dev/null
    qemu-io $S --image-opts "${w[@]}" "$(E b-$f.qcow2)" >/dev/null
done
qemu-img create -q -f qcow2 plain.qcow2 1M
qemu-io "${w[@]}" plain.qcow2 >/dev/null
qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 plainb.qcow2
qemu-io "${w[@]}" plainb.qcow2 >/dev/null

for f in luks aes; do
    _section "read what QEMU wrote ($f)"
    _img compare $S --image-opts "$(E q-$f.qcow2)" "driver=qcow2,file.filename=plain.qcow2"
    _img compare $S --image-opts "$(E b-$f.qcow2)" "driver=qcow2,file.filename=plainb.qcow2"
    _img convert $S --image-opts "$(E b-$f.qcow2)" -O raw out.raw
    qemu-img convert -O raw plainb.qcow2 ref.raw
    cmp out.raw ref.raw && echo identical
    _img map $S --image-opts "$(E q-$f.qcow2)"
    _img map --output=json $S --image-opts "$(E q-$f.qcow2)"
    _img map --output=json $S --image-opts "$(E b-$f.qcow2)"
    _img check $S --image-opts "$(E q-$f.qcow2)"
    _img check -f qcow2 b-$f.qcow2
done

_section "resize"
_img resize $S --image-opts "$(E q-luks.qcow2)" 2M
_img info q-luks.qcow2 | grep virtual
_img compare $S --image-opts "$(E q-luks.qcow2)" "driver=qcow2,file.filename=plain.qcow2"

_section "wrong and missing secrets"
_img compare --object secret,id=sec0,data=abd --image-opts "$(E q-luks.qcow2)" "$(E q-luks.qcow2)"
_img compare --image-opts "$(E q-luks.qcow2)" "$(E q-luks.qcow2)"
_img compare --object secret,id=other,data=abc --image-opts "$(E q-luks.qcow2)" "$(E q-luks.qcow2)"
_img map -f qcow2 q-luks.qcow2
_img check -f qcow2 q-aes.qcow2
