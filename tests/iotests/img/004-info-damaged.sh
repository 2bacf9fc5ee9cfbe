# qemu-img info on headers with one field poked (qcow2-format.md §18).
. ./common.rc
$QEMU_IMG create -q -f qcow2 good.qcow2 64M
_poke() {
    cp good.qcow2 p.qcow2
    printf "$2" | dd of=p.qcow2 bs=1 seek=$1 conv=notrunc status=none
    echo "--- offset $1"
    _img info p.qcow2
}
_poke 4 '\x00\x00\x00\x04'
_poke 20 '\x00\x00\x00\x08'
_poke 20 '\x00\x00\x00\x16'
_poke 96 '\x00\x00\x00\x07'
_poke 79 '\x20'
_poke 79 '\x08'
_poke 79 '\x01'
_poke 79 '\x02'
_poke 32 '\x00\x00\x00\x03'
_poke 36 '\x00\x00\x00\x00'
_poke 36 '\x00\x40\x00\x01'
_poke 47 '\x01'
_poke 56 '\x00\x00\x00\x00'
_poke 56 '\x00\x00\x01\x00'
_poke 55 '\x01'
_poke 60 '\x00\x01\x00\x01'
_poke 0 'XXXX'
