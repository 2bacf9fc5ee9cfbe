# check -r all of an image whose refcount table points past the end of the file: the repair
# grows the file to cover the refcount block, and when the file cannot grow (here past
# ulimit -f) qemu-img 7.2 reports the failed truncate of the file ("Could not resize file")
# before "ERROR could not resize image", then rebuilds the refcounts in the file it has.
. ./common.rc
# _poke FILE OFFSET HEX: writes the bytes given in hex at OFFSET.
_poke() { printf "$(echo "$3" | sed 's/../\\x&/g')" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none; }
for entry in 0000000004000000 0000000100000000; do
    _section "refcount table entry 1 = 0x$entry, ulimit -f 10 MiB"
    $QEMU_IMG create -q -f qcow2 t.qcow2 64M
    _poke t.qcow2 0x10008 $entry
    (ulimit -f 10240; _img check -r all t.qcow2)
    _img check t.qcow2
    rm -f t.qcow2
done
