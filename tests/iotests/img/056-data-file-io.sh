# Guest I/O on qcow2 images with an external data file (qcow2-format.md §10) made by the tool
# under test (qemu-io 7.2 when recording, `qblock io` when checking qblock): writes (in place,
# new clusters at host offset = guest offset with the rest of the cluster from the backing
# file or zeros, guest cluster 0 at offset 0), write-zeroes with and without -u, discards,
# with data_file_raw off and on; the L2 entries, map, check and both files' bytes must be
# QEMU's. Then the open options and refusals: a missing data file, the data-file option, a
# data file bit without a name, compressed writes, internal snapshots.
. ./data_file.rc
. ./common.rc
qemu-img create -q -f qcow2 b.qcow2 4M
qemu-io -c 'write -P 0x77 0 4M' -c 'write -z 1M 64k' b.qcow2 >/dev/null
for raw in off on; do
    for backing in no yes; do
        [ $raw = on ] && [ $backing = yes ] && continue
        _section "data_file_raw=$raw, backing file: $backing"
        rm -f t.qcow2 d.raw
        if [ $backing = yes ]; then
            qemu-img create -q -f qcow2 -o data_file=d.raw -b b.qcow2 -F qcow2 t.qcow2 4000k
        else
            qemu-img create -q -f qcow2 -o data_file=d.raw,data_file_raw=$raw t.qcow2 4000k
        fi
        _io -c 'write -P 1 0 512' -c 'write -P 2 70k 1k' -c 'write -P 3 129k 200k' \
            -c 'write -P 4 3990k 4k' -c 'write -P 5 1M 128k' t.qcow2
        _io -c 'write -P 6 1000 100' -c 'write -P 7 1M 4k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'write -z 0 64k' -c 'write -z -u 64k 64k' -c 'discard 192k 128k' \
            -c 'write -z 2M 1M' -c 'write -z 1040k 4k' -c 'discard 3M 4k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'write -P 8 60k 8k' -c 'write -P 9 2M 4k' t.qcow2
        _show t.qcow2 d.raw
        _io -c 'read -P 1 0 512' -c 'read -P 8 60k 8k' -c 'read -P 0 68k 2k' -c 'read -P 4 3990k 4k' t.qcow2
        _img compare -f qcow2 -F qcow2 t.qcow2 t.qcow2
    done
done

_section "the data file is opened by its recorded name, from the working directory"
rm -f t.qcow2 d.raw
qemu-img create -q -f qcow2 -o data_file=d.raw t.qcow2 1M
qemu-io -c 'write -P 0x11 0 64k' t.qcow2 >/dev/null
mkdir sub
(cd sub && _io -c 'read -P 0x11 0 64k' ../t.qcow2)
(cd sub && _img info ../t.qcow2 | grep -v '^disk size')
(cd sub && _img map ../t.qcow2)
_io -c 'read -P 0x11 0 64k' "$TEST_DIR/t.qcow2"

_section "the data-file option"
cp d.raw other.raw
qemu-io -f raw -c 'write -P 0x22 0 64k' other.raw >/dev/null
_io -c 'read -P 0x22 0 64k' "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"t.qcow2\"},\"data-file\":{\"driver\":\"file\",\"filename\":\"other.raw\"}}"
_io -c 'read -P 0x22 0 64k' --image-opts driver=qcow2,file.filename=t.qcow2,data-file.driver=file,data-file.filename=other.raw
_io -c 'read -P 0x22 0 64k' --image-opts driver=qcow2,file.filename=t.qcow2,data-file.filename=other.raw
qemu-img create -q -f qcow2 plain.qcow2 1M
_io -c 'read 0 64k' "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"plain.qcow2\"},\"data-file\":{\"driver\":\"file\",\"filename\":\"other.raw\"}}"
mv d.raw gone.raw
_io -c 'read 0 64k' t.qcow2
_img map t.qcow2
_img info t.qcow2 | grep -v '^disk size'
mv gone.raw d.raw

_section "the data file bit without a name"
cp t.qcow2 noname.qcow2
# Zero the extension's type (at 112): the name is gone, the bit stays.
printf '\0\0\0\0' | dd of=noname.qcow2 bs=1 seek=112 conv=notrunc status=none
_io -c 'read 0 64k' noname.qcow2
_io -c 'read -P 0x11 0 64k' "json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":\"noname.qcow2\"},\"data-file\":{\"driver\":\"file\",\"filename\":\"d.raw\"}}"

_section "qemu-io info"
_io -c info t.qcow2
rm -f r.qcow2 r.raw
qemu-img create -q -f qcow2 -o data_file=r.raw,data_file_raw=on r.qcow2 1M
_io -c info r.qcow2

_section "refused: compressed writes, internal snapshots"
_io -c 'write -c 0 64k' t.qcow2
_img snapshot -c s1 t.qcow2
_img snapshot -l t.qcow2
_img check t.qcow2
_sum t.qcow2
