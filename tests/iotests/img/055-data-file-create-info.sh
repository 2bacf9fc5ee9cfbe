# qcow2 images with an external data file (qcow2-format.md §10) made by the tool under test:
# create -o data_file=NAME[,data_file_raw=on] with each preallocation mode (image bytes and
# data file compared through md5), the option errors, info (human and JSON), measure, map
# and check of the fresh images.
. ./common.rc
_show() {
    _sum "$1"
    _sum "$2"
    _img info "$1"
    _img info --output=json "$1"
    _img map "$1"
    _img map --output=json "$1"
    _img check "$1"
}
for opts in "" ",data_file_raw=on" ",preallocation=metadata" ",preallocation=falloc" \
    ",preallocation=full" ",data_file_raw=on,preallocation=metadata" \
    ",cluster_size=4096,data_file_raw=on" ",lazy_refcounts=on,refcount_bits=64"; do
    _section "data_file=d.raw$opts"
    rm -f t.qcow2 d.raw
    _img create -f qcow2 -o data_file=d.raw$opts t.qcow2 3M
    _show t.qcow2 d.raw
done

_section "1.5 GiB with 4 KiB clusters, data_file_raw=on (768 L2 tables)"
rm -f t.qcow2 d.raw
_img create -q -f qcow2 -o data_file=d.raw,data_file_raw=on,cluster_size=4096 t.qcow2 1536M
_sum t.qcow2
stat -c %s d.raw
_img check t.qcow2

_section "an existing data file is emptied and sized"
rm -f t.qcow2 d.raw
qemu-img create -q -f raw d.raw 2M
qemu-io -f raw -c 'write -P 9 0 2M' d.raw >/dev/null
_img create -q -f qcow2 -o data_file=d.raw t.qcow2 1M
_sum d.raw

_section "a virtual size that is not a multiple of the cluster size"
rm -f t.qcow2 d.raw
_img create -q -f qcow2 -o data_file=d.raw,data_file_raw=on t.qcow2 1000k
_sum t.qcow2
_sum d.raw
_img map --output=json t.qcow2

_section "with a backing file"
qemu-img create -q -f qcow2 b.qcow2 1M
rm -f t.qcow2 d.raw
_img create -f qcow2 -o data_file=d.raw -b b.qcow2 -F qcow2 t.qcow2
_sum t.qcow2
_img info t.qcow2
_img map --output=json t.qcow2

_section "errors"
for opts in "data_file_raw=on" "data_file=d2.raw,compat=0.10" \
    "data_file=d2.raw,data_file_raw=on,backing_file=b.qcow2,backing_fmt=qcow2" \
    "data_file=d2.raw,backing_file=b.qcow2,backing_fmt=qcow2,preallocation=metadata" \
    "data_file=nodir/d2.raw" "data_file=d2.raw,data_file_raw=maybe"; do
    rm -f e.qcow2 d2.raw
    _img create -f qcow2 -o "$opts" e.qcow2 1M
    ls e.qcow2 d2.raw 2>&1 | sed 's/^ls: //'
done

_section "measure"
_img measure -O qcow2 -o data_file=x.raw --size 1G
_img measure -O qcow2 -o data_file=x.raw,data_file_raw=on --size 1G
_img measure --output=json -O qcow2 -o data_file=x.raw t.qcow2
