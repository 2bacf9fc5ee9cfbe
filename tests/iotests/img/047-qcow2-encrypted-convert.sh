# convert to and from encrypted qcow2 images: -o encrypt.* creates an encrypted target that
# is opened with its key, --target-image-opts writes into an existing one, -c is refused.
. ./crypt.rc
. ./common.rc
E() { echo "driver=qcow2,encrypt.key-secret=sec0,file.filename=$1"; }
qemu-img create -q -f raw src.raw 3M
qemu-io -f raw -c 'write -P 7 100k 1M' -c 'write -P 9 2500k 10k' src.raw >/dev/null

_section "to an encrypted target"
_imgr convert $S -O qcow2 -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 src.raw l.qcow2
qemu-img compare $S --image-opts "$(E l.qcow2)" "driver=raw,file.filename=src.raw"
qemu-img check $S --image-opts "$(E l.qcow2)" | grep -v allocated
_img convert $S -O qcow2 -o encrypt.format=aes,encrypt.key-secret=sec0,cluster_size=4k src.raw a.qcow2
qemu-img compare $S --image-opts "$(E a.qcow2)" "driver=raw,file.filename=src.raw"
qemu-img map --output=json $S --image-opts "$(E a.qcow2)"
_img convert -O qcow2 -o encrypt.format=aes src.raw x.qcow2
_img convert -c $S -O qcow2 -o encrypt.format=aes,encrypt.key-secret=sec0 src.raw x.qcow2
ls x.qcow2 2>&1 | sed 's/^ls: //'

_section "into an existing one"
qemu-img create -q -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=512 t.qcow2 3M
_img convert -n $S src.raw --target-image-opts "$(E t.qcow2)"
qemu-img compare $S --image-opts "$(E t.qcow2)" "driver=raw,file.filename=src.raw"

_section "from an encrypted image"
_img convert $S --image-opts "$(E l.qcow2)" -O raw back.raw
cmp back.raw src.raw && echo identical
_img convert $S --image-opts "$(E t.qcow2)" -O qcow2 plain.qcow2
qemu-img compare plain.qcow2 src.raw
_imgr convert $S --image-opts "$(E a.qcow2)" -O qcow2 -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 l2.qcow2
qemu-img compare $S --image-opts "$(E l2.qcow2)" "driver=raw,file.filename=src.raw"
_img convert -O raw l.qcow2 y.raw
