# qcow2 images with an external data file and extended L2 entries (qcow2-format.md §7, §10),
# created and written by the tool under test (qemu-img/qemu-io 7.2 when recording, qblock
# when checking qblock): the data file's size for each preallocation mode, then writes (whole
# and partial subclusters, new clusters at host offset = guest offset, guest cluster 0 at
# offset 0, COW of partly written subclusters from the backing file or zeros), write-zeroes,
# discards, with data_file_raw off and on and with a backing file; the L2 entries with their
# subcluster bitmaps, map, check and both files' bytes must be QEMU's.
. ./data_file.rc
. ./common.rc
# The first 16 entries with their subcluster bitmaps.
L2_BYTES=256

_section "create: the data file's size"
for o in "" data_file_raw=on preallocation=metadata preallocation=falloc \
    data_file_raw=on,preallocation=full; do
    for cs in 64k 2M; do
        rm -f c.qcow2 c.raw
        _img create -q -f qcow2 -o "data_file=c.raw,extended_l2=on,cluster_size=$cs${o:+,$o}" \
            c.qcow2 $((2 * 1024 * 1024 + 7 * 4096 + 512))
        echo "$o cluster_size=$cs: data file $(stat -c %s c.raw) bytes"
        _l2 c.qcow2 | head -2
        _img check c.qcow2
    done
done

qemu-img create -q -f qcow2 b.qcow2 4M
qemu-io -c 'write -P 0x77 0 4M' -c 'write -z 1M 64k' b.qcow2 >/dev/null
for raw in off on; do
    for backing in no yes; do
        [ $raw = on ] && [ $backing = yes ] && continue
        _section "data_file_raw=$raw, backing file: $backing"
        rm -f t.qcow2 d.raw
        if [ $backing = yes ]; then
            _img create -q -f qcow2 -o data_file=d.raw,extended_l2=on -b b.qcow2 -F qcow2 \
                t.qcow2 4000k
        else
            _img create -q -f qcow2 -o data_file=d.raw,extended_l2=on,data_file_raw=$raw \
                t.qcow2 4000k
        fi
        _io -c 'write -P 1 0 512' -c 'write -P 2 70k 1k' -c 'write -P 3 129k 200k' \
            -c 'write -P 4 3990k 4k' -c 'write -P 5 1M 128k' t.qcow2
        _io -c 'write -P 6 1000 100' -c 'write -P 7 1M 4k' -c 'write -P 10 66k 2k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'write -z 0 64k' -c 'write -z -u 64k 64k' -c 'discard 192k 128k' \
            -c 'write -z 2M 1M' -c 'write -z 1040k 4k' -c 'discard 3M 4k' \
            -c 'write -z 3136k 6k' -c 'write -z 3200k 3k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'write -P 8 60k 8k' -c 'write -P 9 2M 4k' -c 'write -P 11 3137k 1k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'read -P 1 0 512' -c 'read -P 8 60k 8k' -c 'read -P 0 68k 2k' \
            -c 'read -P 4 3990k 4k' -c 'read -P 11 3137k 1k' t.qcow2
        _img compare -f qcow2 -F qcow2 t.qcow2 t.qcow2
        _img convert -O raw t.qcow2 out.raw
        _sum out.raw
    done
done
