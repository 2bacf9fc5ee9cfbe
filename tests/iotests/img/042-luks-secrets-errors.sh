# --object secret as qemu-img 7.2 takes it: data/file, format=raw|base64, keyid+iv (a value
# encrypted with AES-256-CBC), and its messages; a secret used to unlock a luks image.
. ./common.rc
qemu-img create -q -f luks --object secret,id=sec0,data=abc -o key-secret=sec0,iter-time=10 a.luks 1M
L="driver=luks,key-secret=s,file.filename=a.luks"
_try() { echo "--- $*"; _img compare "$@" --image-opts "$L" "$L"; }
printf abc >pw
printf 'abc\n' >pw-nl
K=0123456789abcdef0123456789abcdef
IV=MDEyMzQ1Njc4OWFiY2RlZg==
_try --object secret,id=s,data=abc
_try --object secret,id=s,data=YWJj,format=base64
_try --object secret,id=s,data=YWJj,format=raw
_try --object secret,id=s,file=pw
_try --object secret,id=s,file=pw-nl
_try --object secret,id=s,file=pw,format=raw
_try --object secret,id=s,data=abc,format=hex
_try --object secret,id=s
_try --object secret,id=s,data=abc,file=pw
_try --object secret,id=s,file=nonexistent
_try --object secret,id=s,data=@@@,format=base64
_try --object secret,id=s,data=abc,bogus=1
_try --object secret,data=abc
_try --object secret,id=s,data=abc --object secret,id=s,data=abc
_try --object secret,id=s,data=abc,keyid=k
_try --object secret,id=k,data=short --object secret,id=s,data=abc,keyid=k
_try --object secret,id=k,data=$K --object secret,id=s,data=abc,keyid=k
_try --object secret,id=k,data=$K --object secret,id=s,data=abc,keyid=k,iv=abc
_try --object secret,id=k,data=$K --object secret,id=s,data=abc,keyid=k,iv=$IV
_try --object secret,id=k,data=$K --object secret,id=s,data=8i/78fXGKXul18RKAZ88kw==,keyid=k,iv=$IV
_try --object secret,id=k,data=$K --object secret,id=s,data=8i/78fXGKXul18RKAZ88kw==,format=base64,keyid=k,iv=$IV
_try --object secret,id=s,data=abc,iv=$IV
_try --object secret,id=s,data=abd
_try --object secret,id=t,data=abc
