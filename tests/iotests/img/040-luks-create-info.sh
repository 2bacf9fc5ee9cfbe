# create -f luks with every option qemu-img 7.2 accepts for luks (cipher algorithms x modes,
# IV generators and their hashes, PBKDF2 hashes, iter-time), the refusals, and info's
# encrypt block (text and JSON). UUIDs and iteration counts are random/calibrated: filtered.
. ./common.rc
S="--object secret,id=sec0,data=abc"
_f() { sed -e 's/[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}/UUID/' \
    -e 's/iters: [0-9]*/iters: N/' -e 's/"iters": [0-9]*/"iters": N/' \
    -e 's/"master-key-iters": [0-9]*/"master-key-iters": N/'; }

_section "defaults"
_img create -f luks $S -o key-secret=sec0,iter-time=10 a.luks 1M
stat -c %s a.luks
_img info a.luks | _f
_img info --output=json a.luks | _f
_img info -f luks a.luks | _f | head -3
_img info --image-opts driver=luks,file.filename=a.luks | _f | head -3
_img info $S --image-opts driver=luks,key-secret=sec0,file.filename=a.luks | _f | head -3

_section "every option, and the file protocol's"
_img create -f luks $S -o extent_size_hint=0,preallocation=off,nocow=off,iter-time=10,hash-alg=sha1,ivgen-hash-alg=sha256,ivgen-alg=plain64,cipher-mode=xts,cipher-alg=aes-128,key-secret=sec0 b.luks 1000
stat -c %s b.luks
_img info b.luks | _f
_img create -q -f luks $S -o key-secret=sec0,iter-time=10,ivgen-alg=essiv c.luks 1M
_img info --output=json c.luks | _f

_section "algorithms x modes"
for alg in aes-128 aes-256 serpent-128 serpent-256 twofish-128 twofish-256 cast5-128; do
    for mode in xts cbc ecb ctr; do
        [ "$alg" = cast5-128 ] && [ "$mode" = xts ] && continue
        _img create -q -f luks $S -o key-secret=sec0,iter-time=10,cipher-alg=$alg,cipher-mode=$mode m.luks 64k
        _img info m.luks | grep -e 'cipher' -e 'payload offset' -e 'virtual size'
        rm -f m.luks
    done
done
for o in aes-192,cipher-mode=xts serpent-192,cipher-mode=xts twofish-192,cipher-mode=xts; do
    _img create -q -f luks $S -o key-secret=sec0,iter-time=10,cipher-alg=$o m.luks 64k
    _img info m.luks | grep -e 'cipher' -e 'payload offset'
    rm -f m.luks
done

_section "hashes and IV generators"
for o in hash-alg=sha1 hash-alg=sha224 hash-alg=sha384 hash-alg=sha512 hash-alg=ripemd160 \
         hash-alg=md5 ivgen-alg=plain ivgen-alg=essiv,ivgen-hash-alg=sha256 \
         ivgen-alg=essiv,cipher-alg=twofish-256,cipher-mode=cbc; do
    _img create -q -f luks $S -o key-secret=sec0,iter-time=10,$o m.luks 64k
    _img info m.luks | grep -e 'alg' -e 'mode'
    rm -f m.luks
done

_section "refusals"
_img create -f luks m.luks 1M
_img create -f luks -o key-secret=zz m.luks 1M
_img create -f luks -o cipher-alg=bogus m.luks 1M
_img create -f luks $S -o key-secret=sec0,cipher-mode=bogus m.luks 1M
_img create -f luks $S -o key-secret=sec0,ivgen-alg=bogus m.luks 1M
_img create -f luks $S -o key-secret=sec0,hash-alg=bogus m.luks 1M
_img create -f luks $S -o key-secret=sec0,ivgen-hash-alg=bogus m.luks 1M
_img create -f luks $S -o key-secret=sec0,cipher-alg=des m.luks 1M
_img create -f luks $S -o key-secret=sec0,cipher-alg=cast5-128 m.luks 1M
_img create -f luks $S -o key-secret=sec0,ivgen-alg=essiv,ivgen-hash-alg=sha1 m.luks 1M
_img create -f luks $S -o key-secret=sec0,ivgen-alg=essiv,ivgen-hash-alg=sha512,cipher-alg=twofish-128 m.luks 1M
_img create -f luks $S -o key-secret=sec0,ivgen-alg=essiv,cipher-alg=cast5-128,cipher-mode=cbc m.luks 1M
_img create -f luks $S -o key-secret=sec0,essiv=1 m.luks 1M
_img create -f luks $S -o key-secret=sec0,iter-time=x m.luks 1M
ls m.luks 2>&1 | sed 's/^ls: //'

_section "help"
_img create -f luks -o help
