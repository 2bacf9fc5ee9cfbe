# Legacy AES qcow2 images (encrypt.format=aes and the deprecated encryption=on) and the
# encrypt.* refusals of create, measure with encryption, and info of an AES image.
. ./crypt.rc
. ./common.rc

_section "aes"
_img create -f qcow2 $S -o encrypt.format=aes,encrypt.key-secret=sec0 a.qcow2 1M
_sum a.qcow2
_img info a.qcow2
_img info --output=json a.qcow2
_img create -f qcow2 $S -o encryption=on,encrypt.key-secret=sec0 e.qcow2 1M
_sum e.qcow2
_img create -f qcow2 $S -o encryption=on,encrypt.key-secret=sec0,cluster_size=512,compat=0.10 f.qcow2 1M
_sum f.qcow2
_img check $S --image-opts driver=qcow2,encrypt.key-secret=sec0,file.filename=a.qcow2

_section "refusals"
_imgr create -f qcow2 -o encrypt.format=luks x.qcow2 1M
_img create -f qcow2 -o encrypt.format=aes x.qcow2 1M
_img create -f qcow2 -o encryption=on x.qcow2 1M
_imgr create -f qcow2 $S -o encryption=on,encrypt.format=luks,encrypt.key-secret=sec0 x.qcow2 1M
_img create -f qcow2 $S -o encrypt.format=foo,encrypt.key-secret=sec0 x.qcow2 1M
_img create -f qcow2 $S -o encrypt.format=aes,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128 x.qcow2 1M
_img create -f qcow2 $S -o encrypt.key-secret=sec0 x.qcow2 1M
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=nosuch x.qcow2 1M
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=bogus x.qcow2 1M
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-mode=bogus x.qcow2 1M
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=cast5-128 x.qcow2 1M
ls x.qcow2 2>&1 | sed 's/^ls: //'

_section "measure"
_imgr measure -O qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 --size 1G
_imgr measure -O qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc --size 1G
_imgr measure -O qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=512 --size 1G
_imgr measure -O qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=2M --output=json --size 1G
_img measure -O qcow2 $S -o encrypt.format=aes,encrypt.key-secret=sec0 --size 1G
_imgr measure -O qcow2 $S -o encrypt.format=luks --size 1G
