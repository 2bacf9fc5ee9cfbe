# convert into and out of qcow2 images with an external data file (qcow2-format.md §10), by
# the tool under test: -O qcow2 -o data_file=NAME[,data_file_raw=on] (with preallocation),
# the image and data file bytes, map, check and compare; a data-file image as the source;
# commit of an overlay into a data-file image; amend of the data file options; resize (grow).
. ./common.rc
qemu-img create -q -f qcow2 src.qcow2 3M
qemu-io -c 'write -P 1 0 100k' -c 'write -z 1M 64k' -c 'write -P 3 2M 4k' -c 'write -P 4 3068k 4k' \
    src.qcow2 >/dev/null
for opts in "data_file=d.raw" "data_file=d.raw,data_file_raw=on" \
    "data_file=d.raw,preallocation=metadata" "data_file=d.raw,cluster_size=4096"; do
    _section "convert -O qcow2 -o $opts"
    rm -f t.qcow2 d.raw
    _img convert -O qcow2 -o "$opts" src.qcow2 t.qcow2
    _sum t.qcow2
    _sum d.raw
    _img map t.qcow2
    _img map --output=json t.qcow2
    _img check t.qcow2
    _img compare src.qcow2 t.qcow2
done

_section "a data-file image as the source"
_img convert -O raw t.qcow2 out.raw
_sum out.raw
_img convert -O qcow2 t.qcow2 out.qcow2
_img compare src.qcow2 out.qcow2
_img map --output=json out.qcow2

_section "commit of an overlay into a data-file image"
rm -f t.qcow2 d.raw
qemu-img create -q -f qcow2 -o data_file=d.raw t.qcow2 3M
qemu-io -c 'write -P 5 0 192k' t.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b t.qcow2 -F qcow2 top.qcow2
qemu-io -c 'write -P 6 64k 4k' -c 'write -P 7 1M 64k' top.qcow2 >/dev/null
_img commit top.qcow2
_sum t.qcow2
_sum d.raw
_img map --output=json t.qcow2
_img check t.qcow2

_section "amend: the data file's name, data_file_raw"
rm -f t.qcow2 d.raw
qemu-img create -q -f qcow2 -o data_file=d.raw,data_file_raw=on t.qcow2 1M
_img amend -o data_file=renamed.raw t.qcow2
mv d.raw renamed.raw
_img info t.qcow2 | grep '^    data'
_img amend -o data_file_raw=off t.qcow2
_img amend -o data_file_raw=on t.qcow2
_img info --output=json t.qcow2 | grep '"data-file'
_sum t.qcow2
qemu-img create -q -f qcow2 plain.qcow2 1M
_img amend -o data_file=d.raw plain.qcow2
_img amend -o data_file_raw=on plain.qcow2
_sum plain.qcow2

_section "resize (growing): the data file follows, data_file_raw=on and preallocation map 1:1"
for raw in off on; do
    rm -f t.qcow2 d.raw
    qemu-img create -q -f qcow2 -o data_file=d.raw,data_file_raw=$raw t.qcow2 1000k
    qemu-io -c 'write -P 1 0 1000k' t.qcow2 >/dev/null
    _img resize t.qcow2 3M
    _sum d.raw
    _img map --output=json t.qcow2
    _img resize --preallocation=metadata t.qcow2 5M
    _img resize --preallocation=full t.qcow2 6M
    _sum t.qcow2
    _sum d.raw
    _img map --output=json t.qcow2
    _img check t.qcow2
done
