# The luks driver's data path through the subcommands: an image qemu-img created and
# qemu-io wrote, read back (compare, convert, map, check, resize); an image created by the
# tool under test, written through convert -n and read back by qemu-io.
. ./common.rc
S="--object secret,id=sec0,data=abc"
L() { echo "driver=luks,key-secret=sec0,file.filename=$1"; }
qemu-img create -q -f luks $S -o key-secret=sec0,iter-time=10 q.luks 1M
qemu-io $S --image-opts -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 100k 3k' -c 'write -z 512k 64k' \
    "$(L q.luks)" >/dev/null
qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 100k 3k' -c 'write -z 512k 64k' \
    -c 'write -P 0 64k 36k' -c 'write -P 0 103k 409k' -c 'write -P 0 576k 448k' q.raw >/dev/null 2>&1 ||
    { truncate -s 1M q.raw; qemu-io -f raw -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 100k 3k' q.raw >/dev/null; }

_section "read what QEMU wrote"
_img compare $S --image-opts "$(L q.luks)" "driver=raw,file.filename=q.raw"
_img compare $S -F raw --image-opts "$(L q.luks)" q.raw
_img convert $S --image-opts "$(L q.luks)" -O raw out.raw
cmp out.raw q.raw && echo identical
_img map $S --image-opts "$(L q.luks)"
_img map --output=json $S --image-opts "$(L q.luks)"
_img check $S --image-opts "$(L q.luks)"
_img check -f luks q.luks

_section "resize"
_img resize $S --image-opts "$(L q.luks)" 2M
stat -c %s q.luks
_img info q.luks | grep virtual
_img resize --shrink $S --image-opts "$(L q.luks)" 1M
stat -c %s q.luks
_img compare $S --image-opts "$(L q.luks)" "driver=raw,file.filename=q.raw"

_section "the tool's image, read by QEMU"
_img create -q -f luks $S -o key-secret=sec0,iter-time=10,cipher-alg=twofish-128,cipher-mode=cbc,ivgen-alg=essiv t.luks 1M
_img convert -n $S -f raw q.raw --target-image-opts "$(L t.luks)"
qemu-io $S --image-opts -c 'read -P 0x5a 0 64k' -c 'read -P 0x11 100k 3k' -c 'read -P 0 512k 64k' \
    "$(L t.luks)" | grep -v ops
qemu-img compare $S --image-opts "$(L t.luks)" "driver=raw,file.filename=q.raw"

_section "wrong and missing secrets"
_img compare --object secret,id=sec0,data=abd --image-opts "$(L q.luks)" "$(L q.luks)"
_img compare --image-opts "$(L q.luks)" "$(L q.luks)"
_img compare --object secret,id=other,data=abc --image-opts "$(L q.luks)" "$(L q.luks)"
_img map -f luks q.luks
