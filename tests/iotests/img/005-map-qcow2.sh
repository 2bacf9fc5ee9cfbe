# qemu-img map on qcow2 images written by qemu-io: data, zero clusters (write -z, write -z -u),
# discards, compressed clusters, --start-offset/--max-length, errors (qemu-compat.md §3.4).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
$QEMU_IMG create -q -f qcow2 a.qcow2 4M
_io -c 'write -P 1 0 192k' -c 'write -z 256k 64k' -c 'write -z -u 512k 64k' \
    -c 'write -P 2 1M 64k' -c 'discard 1M 64k' -c 'write -P 3 2M 128k' \
    -c 'write -P 4 3M 64k' -c 'write -z 3M 32k' -c 'write -P 5 4032k 64k' a.qcow2
$QEMU_IMG create -q -f qcow2 -o cluster_size=4k,compat=0.10 b.qcow2 1M
_io -c 'write -P 1 0 8k' -c 'write -P 2 12k 4k' -c 'write -P 3 20k 4k' -c 'write -z 16k 4k' \
    -c 'write -P 4 1020k 4k' -c 'discard 0 4k' b.qcow2
$QEMU_IMG create -q -f qcow2 c.qcow2 2M
_io -c 'write -P 3 0 256k' -c 'write -z 64k 64k' -c 'write -c -P 4 1M 64k' c.qcow2
$QEMU_IMG create -q -f qcow2 e.qcow2 1G
for f in a.qcow2 b.qcow2 c.qcow2 e.qcow2; do
    _section "$f"
    _img map $f
    _img map --output=json $f
done
_section "--start-offset and --max-length"
_img map --output=json --start-offset=100k --max-length=300k a.qcow2
_img map --start-offset=100k --max-length=300k a.qcow2
_img map --output=json --start-offset=2M a.qcow2
_img map --output=json --max-length=0 a.qcow2
_img map --output=json --start-offset=4M a.qcow2
_img map --output=json --start-offset=8M a.qcow2
_img map --output=json --start-offset=1000 --max-length=1000 b.qcow2
_img map --output=json -U --image-opts driver=qcow2,file.filename=b.qcow2
_section "errors"
_img map --start-offset=abc a.qcow2
_img map --max-length=1.5 a.qcow2
_img map --output=xml a.qcow2
_img map --image-opts -f qcow2 a.qcow2
_img map -f raw
_img map a.qcow2 b.qcow2
_img map --bogus a.qcow2
_img map --output
_img map nofile.qcow2
_img map -f bogus a.qcow2
