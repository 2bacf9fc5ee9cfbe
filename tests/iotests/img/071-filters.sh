# qemu-img subcommands through the filter drivers of issue 15 (json: filenames and
# --image-opts): map, compare, convert and measure through quorum, blkverify, a raw
# offset/size window, null-co, copy-on-read (refused read-only, as in QEMU) and a convert
# into a compress filter. The "image:" lines show QEMU's names of these nodes (json: keys in
# QEMU's hash order, blkverify:RAW:TEST).
. ./common.rc

for i in 0 1; do
    qemu-img create -q -f raw q$i.raw 1M
    qemu-io -f raw -c "write -P 0x11 0 64k" -c "write -P 0x22 512k 4k" q$i.raw >/dev/null
done
_quorum='json:{"driver":"quorum","vote-threshold":2,"children":[{"driver":"raw","file":{"driver":"file","filename":"q0.raw"}},{"driver":"raw","file":{"driver":"file","filename":"q1.raw"}}]}'
_bv='json:{"driver":"blkverify","test":{"driver":"raw","file":{"driver":"file","filename":"q0.raw"}},"raw":{"driver":"raw","file":{"driver":"file","filename":"q1.raw"}}}'
_window='json:{"driver":"raw","offset":32768,"size":65536,"file":{"driver":"file","filename":"q0.raw"}}'
_null='json:{"driver":"null-co","size":1048576,"read-zeroes":true}'

for name in quorum bv window null; do
    eval "j=\$_$name"
    _section "$name"
    _img info "$j"
    _img map --output=json "$j"
    _img compare "$j" q0.raw
    rm -f o.raw o.qcow2
    _img convert -O raw "$j" o.raw
    _sum o.raw
    _img convert -O qcow2 "$j" o.qcow2
    _img check o.qcow2
    _img measure -O qcow2 "$j"
done

_section "--image-opts applies to both images of compare"
_img compare --image-opts \
    driver=quorum,vote-threshold=2,children.0.driver=raw,children.0.file.filename=q0.raw,children.1.driver=raw,children.1.file.filename=q1.raw \
    q1.raw

_section "copy-on-read needs write access"
qemu-img create -q -f qcow2 base.qcow2 1M
qemu-io -c "write -P 0x33 0 128k" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 1M
_img info 'json:{"driver":"copy-on-read","file":{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"}}}'
_img compare --image-opts driver=copy-on-read,file.driver=qcow2,file.file.filename=top.qcow2 base.qcow2

_section "convert into a compress filter"
qemu-img create -q -f qcow2 c.qcow2 1M
_img convert -n --target-image-opts q0.raw driver=compress,file.driver=qcow2,file.file.filename=c.qcow2
_img check c.qcow2
_img compare q0.raw c.qcow2
_img map --output=json c.qcow2
