# create -f qcow2 -o encrypt.format=luks with every encrypt.* option qemu-img 7.2 accepts
# (cipher algorithms x modes, IV generators and hashes, PBKDF2 hashes, iter-time), the
# layout (header fields and the LUKS area's place for 512 B to 2 MiB clusters), and info's
# encrypt tree (text and JSON). UUIDs and iteration counts are random/calibrated: filtered.
. ./crypt.rc
. ./common.rc
_f() { sed -e 's/[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}/UUID/' \
    -e 's/iters: [0-9]*/iters: N/' -e 's/"iters": [0-9]*/"iters": N/' \
    -e 's/"master-key-iters": [0-9]*/"master-key-iters": N/'; }
# The header's crypt_method, L1 and refcount table offsets, the crypto header extension
# (the first extension qemu-img writes) and the file length.
_layout() {
    echo "crypt_method $(od -An -tx1 -j32 -N4 "$1" | tr -d ' \n')" \
        "l1 $(od -An -tx1 -j40 -N8 "$1" | tr -d ' \n')" \
        "reftable $(od -An -tx1 -j48 -N8 "$1" | tr -d ' \n')" \
        "ext $(od -An -tx1 -j112 -N24 "$1" | tr -d ' \n')" \
        "length $(stat -c %s "$1")"
}

_section "defaults"
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 a.qcow2 1M
_layout a.qcow2
_img info a.qcow2 | _f
_img info --output=json a.qcow2 | _f
_img info $S --image-opts driver=qcow2,encrypt.key-secret=sec0,file.filename=a.qcow2 | _f | head -3
_img check $S --image-opts driver=qcow2,encrypt.key-secret=sec0,file.filename=a.qcow2

_section "cluster sizes and sizes"
for spec in "512 1M" "512 256M" "4k 64M" "64k 100G" "2M 1M"; do
    set -- $spec
    _imgr create -q -f qcow2 $S -o cluster_size=$1,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 m.qcow2 $2
    _layout m.qcow2
    _img check -f qcow2 m.qcow2 | grep -v 'allocated'
    rm -f m.qcow2
done

_section "every option"
_imgr create -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha1,encrypt.iter-time=10,cluster_size=4k b.qcow2 1000
_layout b.qcow2
_img info b.qcow2 | _f
_img info --output=json b.qcow2 | _f | grep -A8 '"encrypt"'

_section "algorithms x modes"
for alg in aes-128 aes-256 serpent-128 serpent-256 twofish-128 twofish-256 cast5-128; do
    for mode in xts cbc ecb ctr; do
        [ "$alg" = cast5-128 ] && [ "$mode" = xts ] && continue
        _imgr create -q -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=$alg,encrypt.cipher-mode=$mode m.qcow2 64k
        _img info m.qcow2 | grep -e 'cipher' -e 'payload offset'
        _layout m.qcow2
        rm -f m.qcow2
    done
done

_section "hashes and IV generators"
for o in hash-alg=sha512 hash-alg=ripemd160 ivgen-alg=plain ivgen-alg=essiv,cipher-alg=twofish-256,cipher-mode=cbc; do
    _imgr create -q -f qcow2 $S -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.$o m.qcow2 64k
    _img info m.qcow2 | grep -e 'alg' -e 'mode'
    rm -f m.qcow2
done

_section "compat=0.10 and a backing file"
_imgr create -q -f qcow2 $S -o compat=0.10,encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 v2.qcow2 1M
_layout v2.qcow2
_img info v2.qcow2 | _f | grep -v -e 'active' -e 'key offset' -e 'stripes' -e '\['
_img create -q -f qcow2 base.qcow2 1M
_imgr create -q -f qcow2 $S -b base.qcow2 -F qcow2 -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 top.qcow2
_layout top.qcow2
_img info top.qcow2 | _f | head -8
