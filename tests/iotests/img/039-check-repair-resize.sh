# check -r all of an image whose refcount table points past the end of the file: the repair
# grows the file to cover the refcount block, and when the file cannot grow (here past
# ulimit -f) qemu-img 7.2 reports the failed truncate of the file ("Could not resize file")
# before "ERROR could not resize image", then rebuilds the refcounts in the file it has.
# Resize and convert with preallocation past the limit word the failure as qemu-img does.
. ./common.rc
_exists() { if [ -e "$1" ]; then _sum "$1"; else echo "$1: absent"; fi; }
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

# The same failure (the file cannot grow past ulimit -f) in resize and convert with
# preallocation: a full preallocation sets the file's length first, so it fails as a resize
# and leaves the file as it was; qcow2 adds its own words around the file's.
truncate -s 4M d.raw
for prealloc in full falloc metadata; do
    _section "resize and convert, preallocation=$prealloc past ulimit -f"
    $QEMU_IMG create -q -f qcow2 a.qcow2 1M
    (ulimit -f 1024; _img resize --preallocation=$prealloc a.qcow2 8M)
    _img check a.qcow2
    echo "a.qcow2: $(stat -c %s a.qcow2) bytes"
    $QEMU_IMG create -q -f raw a.raw 512k
    (ulimit -f 1024; _img resize -f raw --preallocation=$prealloc a.raw 8M)
    _sum a.raw
    (ulimit -f 1024; _img convert -f raw -O qcow2 -o preallocation=$prealloc d.raw t.qcow2)
    _exists t.qcow2
    rm -f a.qcow2 a.raw t.qcow2
done
