# qemu-img rebase (qemu-compat.md §3.11): safe mode onto an image of the old chain, onto an
# unrelated image, onto a raw image, onto a shorter one and onto nothing (-b ""); unsafe mode
# (-u), relative backing names (relative to the image's directory), -p and -q, and every error.
# qemu-io (not $QEMU_IMG) reads the data back through the new chain, qemu-img shows the new
# header (info) and checks and maps the image; md5 sums show byte identity with qemu-img's.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_rebase() {
    echo "--- rebase $*"
    stdbuf -oL $QEMU_IMG rebase "$@" 2>&1 | tr '\r' '~'
    echo "exit status: ${PIPESTATUS[0]}"
}
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
_map() { echo "--- map $*"; qemu-img map --output=json "$@" 2>&1; }
_read() { echo "--- read $*"; $QEMU_IO -r "$@" | grep -v '^[0-9.]* [A-Za-z]*, [0-9]* ops; \|^read [0-9]'; }
_backing() { echo "--- backing of $1"; qemu-img info "$1" | grep '^backing file'; }

# base (4M): 1 in [0, 1M), 0x0b in [3M, 3M+64k); mid: 2 in [512k, 1.5M) and a zero cluster at
# 3M; top: 3 in [1M, 1.5M) and 3 in 1000 bytes at 2M+100.
_chain() {
    rm -f base.qcow2 mid.qcow2 top.qcow2
    qemu-img create -q -f qcow2 base.qcow2 4M
    _io -c 'write -P 1 0 1M' -c 'write -P 0x0b 3M 64k' base.qcow2
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    _io -c 'write -P 2 512k 1M' -c 'write -z 3M 64k' mid.qcow2
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    _io -c 'write -P 3 1M 512k' -c 'write -P 3 2097252 1000' top.qcow2
}
# What the chain showed before any rebase, read through the image.
_content() {
    _read -c 'read -P 1 0 512k' -c 'read -P 2 512k 512k' -c 'read -P 3 1M 512k' \
        -c 'read -P 0 1536k 512k' -c 'read -P 0 2M 100' -c 'read -P 3 2097252 1000' \
        -c 'read -P 0 2098252 1047476' -c 'read -P 0 3M 1M' "$@"
}
qemu-img create -q -f qcow2 other.qcow2 4M
_io -c 'write -P 9 0 4M' other.qcow2
qemu-img create -q -f raw other.raw 4M
_io -f raw -c 'write -P 1 0 1M' -c 'write -P 7 2M 1M' other.raw
qemu-img create -q -f qcow2 short.qcow2 1M
_io -c 'write -P 1 0 1M' short.qcow2

_section "safe: onto the base of the old chain"
_chain
_rebase -b base.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_content top.qcow2
_map top.qcow2
_check top.qcow2
_sum top.qcow2

_section "safe: onto the same backing file"
_chain
_rebase -p -b mid.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_content top.qcow2
_sum top.qcow2

_section "safe: onto an unrelated image"
_chain
_rebase -p -b other.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_content top.qcow2
_map top.qcow2
_check top.qcow2
_sum top.qcow2

_section "safe: onto a raw image"
_chain
_rebase -b other.raw -F raw top.qcow2
_backing top.qcow2
_content top.qcow2
_map top.qcow2
_sum top.qcow2

_section "safe: onto a shorter image"
_chain
_rebase -b short.qcow2 -F qcow2 top.qcow2
_content top.qcow2
_map top.qcow2
_sum top.qcow2

_section "safe: onto nothing"
_chain
_rebase -p -b "" top.qcow2
_backing top.qcow2
_content top.qcow2
_map top.qcow2
_check top.qcow2
_sum top.qcow2

_section "unsafe"
_chain
_rebase -u -b other.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_read -c 'read -P 9 0 1M' -c 'read -P 3 1M 512k' top.qcow2
_sum top.qcow2
_rebase -p -u -b gone.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_rebase -u -b base.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_rebase -u -b "" top.qcow2
_backing top.qcow2
_map top.qcow2
_sum top.qcow2

_section "relative names"
mkdir -p sub/deeper
qemu-img create -q -f qcow2 sub/base.qcow2 4M
_io -c 'write -P 1 0 1M' sub/base.qcow2
qemu-img create -q -f qcow2 -b ../base.qcow2 -F qcow2 sub/deeper/top.qcow2
_io -c 'write -P 3 1M 512k' sub/deeper/top.qcow2
cp other.qcow2 sub/other.qcow2
_rebase -b ../other.qcow2 -F qcow2 sub/deeper/top.qcow2
_backing sub/deeper/top.qcow2
_read -c 'read -P 1 0 1M' -c 'read -P 3 1M 512k' -c 'read -P 0 1536k 2560k' sub/deeper/top.qcow2
_rebase -b other.qcow2 -F qcow2 sub/deeper/top.qcow2
_rebase -u -b ../../other.qcow2 -F qcow2 sub/deeper/top.qcow2
_backing sub/deeper/top.qcow2
_read -c 'read -P 1 0 1M' -c 'read -P 3 1M 512k' -c 'read -P 0 1536k 2560k' sub/deeper/top.qcow2
(cd sub && _rebase -b ../other.qcow2 -F qcow2 deeper/top.qcow2)
_backing sub/deeper/top.qcow2

_section "quiet"
_chain
_rebase -q -p -b base.qcow2 -F qcow2 top.qcow2
_content top.qcow2

_section "errors"
_chain
_rebase -b base.qcow2 top.qcow2
_backing top.qcow2
_content top.qcow2
_chain
_rebase -u -b base.qcow2 top.qcow2
_rebase top.qcow2
_rebase -b base.qcow2 -F qcow2
_rebase -b base.qcow2 -F qcow2 top.qcow2 extra
_rebase -b nope.qcow2 -F qcow2 top.qcow2
_rebase -b base.qcow2 -F bogus top.qcow2
_rebase -b nope.qcow2 -F bogus top.qcow2
_rebase -b base.qcow2 -F qcow2 -t bogus top.qcow2
_rebase -b base.qcow2 -F qcow2 -T bogus top.qcow2
_rebase -p -b base.qcow2 -F qcow2 -T bogus top.qcow2
_rebase -c -b base.qcow2 -F qcow2 top.qcow2
_rebase -b base.qcow2 -F qcow2 nonexistent.qcow2
_rebase -f bogus -b base.qcow2 -F qcow2 top.qcow2
_rebase --image-opts -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_rebase -b top.qcow2 -F qcow2 top.qcow2
_backing top.qcow2
_content top.qcow2

_section "images without a backing file"
qemu-img create -q -f raw plain.raw 1M
_rebase -f raw -b base.qcow2 -F qcow2 plain.raw
_rebase -u -f raw -b base.qcow2 -F qcow2 plain.raw
_rebase -u -b base.qcow2 -F qcow2 plain.raw
qemu-img create -q -f qcow2 alone.qcow2 4M
_rebase -u -b "" alone.qcow2
_rebase -b "" alone.qcow2
_sum alone.qcow2
_rebase -b base.qcow2 -F qcow2 alone.qcow2
_backing alone.qcow2
_read -c 'read -P 0 0 4M' alone.qcow2
_map alone.qcow2
_rebase --image-opts -b other.qcow2 -F qcow2 driver=qcow2,file.filename=top.qcow2
_backing top.qcow2
