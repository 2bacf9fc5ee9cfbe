# check -r all on refcount-table entries that cannot be trusted (qemu-img 7.2): an entry with
# reserved bits set is reported and the rebuild replaces its block (nothing is written at its
# offset); an entry whose block would end past INT64_MAX cannot be grown to ("Invalid
# argument") and the file stays as it is (it must never be truncated); a block a little past
# the end of the file is grown to. Runs under a 1 GiB file-size limit. qemu-img (not
# $QEMU_IMG) judges each result (the rebuilt refcount structures need not be byte-identical).
. ./common.rc
ulimit -f 1048576
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
# _poke FILE OFFSET VALUE: writes VALUE as a big-endian 64-bit number at OFFSET.
_poke() {
    printf "$(printf '%016x' "$3" | sed 's/../\\x&/g')" |
        dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

$QEMU_IMG create -q -f qcow2 base.qcow2 16M
qemu-io -c 'write -P 1 0 128k' -c 'write -P 2 8M 64k' base.qcow2 >/dev/null
# The refcount table is at 64 KiB; entry 0 is the only block in use.
for entry in "0 0x0000000000030001" "0 0x00000000000301ff" "1 0x0000000000010100" \
             "1 0xffffffffffff0000" "1 0xfffffffffffe0000" "3 0x0000000001000000"; do
    set -- $entry
    _section "refcount table entry $1 = $2"
    cp base.qcow2 r.qcow2
    _poke r.qcow2 $((65536 + $1 * 8)) "$2"
    _img check r.qcow2
    _img check -r all r.qcow2
    _check r.qcow2
    echo "r.qcow2: $(stat -c %s r.qcow2) bytes"
    qemu-io -r -c 'read -P 1 0 128k' -c 'read -P 2 8M 64k' r.qcow2 | grep -c '^read'
done

# A rebuild places its blocks at clusters the count found free; a structure the count could not
# see (the active L1 table, past the end of the truncated file) may be there: the write is
# refused with a corruption event, as QEMU's (512-byte clusters: L1 table at 0x600).
_section "rebuild over the active L1 table past the end of the file"
qemu-img create -q -f qcow2 -o cluster_size=512 t.qcow2 4M
qemu-io -c 'write -P 1 0 4k' t.qcow2 >/dev/null
truncate -s $((0x600)) t.qcow2
printf '\x00\x00' | dd of=t.qcow2 bs=1 seek=$((0x402)) conv=notrunc status=none
_img check -r all t.qcow2
_check t.qcow2
