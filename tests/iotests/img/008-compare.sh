# qemu-img compare: messages and exit codes for equal and different content, size mismatches,
# strict mode, -q, -p, raw against qcow2, backing chains, chunked reads (qemu-compat.md §3.6).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_cmp() {
    echo "--- compare $*"
    stdbuf -oL $QEMU_IMG compare "$@" 2>&1 | tr '\r' '~'
    echo "exit status: ${PIPESTATUS[0]}"
}
for i in 1 2 3 4 5 6; do $QEMU_IMG create -q -f qcow2 a$i.qcow2 4M; done
_io -c 'write -P 1 0 64k' a1.qcow2
_io -c 'write -P 1 0 64k' a2.qcow2
_io -c 'write -P 1 0 64k' -c 'write -P 7 3146728 1' a3.qcow2
_io -c 'write -P 1 0 64k' -c 'write -z 1M 64k' -c 'write -P 0 2M 64k' a4.qcow2
_io -c 'write -P 1 0 64k' -c 'write -P 5 1000 1' a5.qcow2
_io -c 'write -c -P 1 0 64k' a6.qcow2
$QEMU_IMG create -q -f qcow2 big.qcow2 6M
_io -c 'write -P 1 0 64k' -c 'write -z 5M 64k' big.qcow2
$QEMU_IMG create -q -f qcow2 bigdiff.qcow2 6M
_io -c 'write -P 1 0 64k' -c 'write -P 0 5M 64k' -c 'write -P 9 5245880 1' bigdiff.qcow2
$QEMU_IMG create -q -f qcow2 long1.qcow2 8M
$QEMU_IMG create -q -f qcow2 long2.qcow2 8M
_io -c 'write -P 3 0 6M' long1.qcow2
_io -c 'write -P 3 0 6M' -c 'write -P 4 5000000 1' long2.qcow2
truncate -s 4M a1.raw
_io -f raw -c 'write -P 1 0 64k' a1.raw
$QEMU_IMG create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 32k' base.qcow2
$QEMU_IMG create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 1 32k 32k' top.qcow2

_section "equal and different content"
_cmp a1.qcow2 a1.qcow2
_cmp a1.qcow2 a2.qcow2
_cmp a1.qcow2 a3.qcow2
_cmp a3.qcow2 a1.qcow2
_cmp a1.qcow2 a4.qcow2
_cmp a5.qcow2 a1.qcow2
_cmp a1.qcow2 a6.qcow2
_cmp long1.qcow2 long2.qcow2
_cmp long1.qcow2 long1.qcow2

_section "size mismatch"
_cmp a1.qcow2 big.qcow2
_cmp big.qcow2 a1.qcow2
_cmp a1.qcow2 bigdiff.qcow2
_cmp bigdiff.qcow2 a1.qcow2

_section "strict mode"
_cmp -s a1.qcow2 a2.qcow2
_cmp -s a1.qcow2 big.qcow2
_cmp -s a1.qcow2 a6.qcow2
_cmp -s a1.qcow2 a4.qcow2
_cmp -s a1.qcow2 a3.qcow2

_section "quiet and progress"
_cmp -q a1.qcow2 a2.qcow2
_cmp -q a1.qcow2 a3.qcow2
_cmp -q a1.qcow2 bigdiff.qcow2
_cmp -p a1.qcow2 a2.qcow2
_cmp -p a1.qcow2 a3.qcow2
_cmp -p a1.qcow2 big.qcow2
_cmp -p a1.qcow2 bigdiff.qcow2
_cmp -p -q a1.qcow2 a3.qcow2
_cmp -p -s a1.qcow2 big.qcow2

_section "formats and backing chains"
_cmp a1.raw a1.qcow2
_cmp -f raw -F qcow2 a1.raw a1.qcow2
_cmp -s -f raw -F qcow2 a1.raw a1.qcow2
_cmp -f raw a1.qcow2 a1.qcow2
_cmp -F raw a1.qcow2 a1.qcow2
_cmp top.qcow2 a1.qcow2
_cmp -U top.qcow2 base.qcow2
_cmp -T none top.qcow2 a1.raw
_cmp --image-opts driver=qcow2,file.filename=top.qcow2 driver=raw,file.filename=a1.raw

_section "errors"
_cmp a1.qcow2 nofile.qcow2
_cmp nofile.qcow2 a1.qcow2
_cmp a1.qcow2
_cmp a1.qcow2 a2.qcow2 a3.qcow2
_cmp --bogus a1.qcow2 a2.qcow2
_cmp -f
_cmp -f bogus a1.qcow2 a2.qcow2
_cmp --image-opts -f qcow2 a1.qcow2 a2.qcow2
