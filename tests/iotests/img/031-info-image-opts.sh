# qemu-img info of images named by a json: filename or by --image-opts (qemu-compat.md §5.2,
# §5.3), human and JSON output, --backing-chain, and the open errors.
. ./common.rc
qemu-img create -q -f raw b.raw 1M
qemu-img create -q -f qcow2 -b b.raw -F raw t.qcow2 2M
_img info 'json:{"driver":"qcow2","file":{"driver":"file","filename":"t.qcow2"}}'
_img info --output=json --image-opts driver=qcow2,file.filename=t.qcow2
_img info --backing-chain --image-opts driver=qcow2,file.filename=t.qcow2
_img info --image-opts driver=raw,file.filename=t.qcow2
_img info 'json:{"driver":"file","filename":"t.qcow2"}'
_img info --output=json 'json:{"driver":"raw","file":{"driver":"file","filename":"b.raw"}}'
_img info --image-opts -f qcow2 driver=raw,file.filename=t.qcow2
_img info 'json:{"driver":"qcow2","file":{"driver":"file","filename":"nope"}}'
_img info 'json:{"driver":"qcow2","file":{"driver":"file","filename":"b.raw"}}'
_img info --image-opts driver=qcow2,file.filename=t.qcow2,bogus=1
_img info 'json:{"driver":"qcow2"'
