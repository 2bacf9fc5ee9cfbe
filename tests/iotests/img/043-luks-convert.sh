# convert to and from luks: -O luks with -o key-secret (the new volume is opened with it),
# its refusals, and the copy read back by QEMU.
. ./common.rc
S="--object secret,id=sec0,data=abc"
truncate -s 1M src.raw
qemu-io -f raw -c 'write -P 3 1000 70000' -c 'write -P 4 600k 4k' src.raw >/dev/null
_img convert $S -O luks -o key-secret=sec0,iter-time=10 src.raw a.luks
qemu-img compare $S --image-opts driver=luks,key-secret=sec0,file.filename=a.luks driver=raw,file.filename=src.raw
_img info a.luks | grep -e 'file format' -e 'virtual size' -e 'cipher'
_img convert $S --image-opts driver=luks,key-secret=sec0,file.filename=a.luks -O qcow2 back.qcow2
qemu-img compare -f qcow2 -F raw back.qcow2 src.raw
_img convert $S -O luks -o iter-time=10 src.raw b.luks
_img convert $S -O luks -o key-secret=sec0,iter-time=10,bogus=1 src.raw b.luks
_img convert $S -O luks -o key-secret=sec0,cipher-alg=bogus src.raw b.luks
_img convert $S -c -O luks -o key-secret=sec0 src.raw b.luks
ls b.luks 2>&1 | sed 's/^ls: //'
