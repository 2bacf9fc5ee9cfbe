# measure and check on images named by a json: filename or by --image-opts (issue 14 §6):
# nested protocol options, an explicit format over another format's file, the raw driver
# (measure works, check has nothing to check), a missing file, malformed JSON, unknown
# options, and the filename each report names (--output=json).
. ./common.rc
$QEMU_IMG create -q -f qcow2 a.qcow2 4M
qemu-io -c "write -P 1 0 1M" -c "write -z 2M 512k" a.qcow2 >/dev/null
truncate -s 3M r.raw
qemu-io -f raw -c "write -P 2 1M 64k" r.raw >/dev/null

_section "check"
_img check 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'
_img check 'json:{"file":{"driver":"file","filename":"a.qcow2"}}'
_img check 'json:{"file":{"filename":"a.qcow2"}}'
_img check --output=json 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'
_img check 'json:{"driver":"raw","file":{"driver":"file","filename":"a.qcow2"}}'
_img check 'json:{"driver":"qcow2","file":{"driver":"file","filename":"nofile.qcow2"}}'
_img check 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}'
_img check 'json:{"driver":"qcow2","bogus":1,"file":{"driver":"file","filename":"a.qcow2"}}'
_img check --image-opts driver=qcow2,file.driver=file,file.filename=a.qcow2
_img check --image-opts file.filename=a.qcow2
_img check --image-opts --output=json driver=qcow2,file.filename=a.qcow2
_img check --image-opts driver=raw,file.filename=a.qcow2
_img check --image-opts driver=qcow2,file.filename=nofile.qcow2
_img check --image-opts driver=qcow2,bogus=1,file.filename=a.qcow2
_img check --image-opts 'json:{"driver":"qcow2","file":{"filename":"a.qcow2"}}'
_img check -f qcow2 'json:{"file":{"driver":"file","filename":"a.qcow2"}}'
_img check -f raw 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'

_section "measure"
_img measure -O qcow2 'json:{"driver":"qcow2","file":{"driver":"file","filename":"a.qcow2"}}'
_img measure -O qcow2 'json:{"file":{"driver":"file","filename":"a.qcow2"}}'
_img measure -O raw 'json:{"driver":"raw","file":{"driver":"file","filename":"r.raw"}}'
_img measure --output=json -O qcow2 -o cluster_size=4k \
    'json:{"driver":"raw","file":{"driver":"file","filename":"r.raw"}}'
_img measure -O qcow2 'json:{"driver":"raw","file":{"driver":"file","filename":"a.qcow2"}}'
_img measure -O qcow2 'json:{"driver":"qcow2","file":{"driver":"file","filename":"nofile"}}'
_img measure -O qcow2 'json:{"driver":"qcow2","file":'
_img measure -O qcow2 'json:{"driver":"qcow2","bogus":1,"file":{"filename":"a.qcow2"}}'
_img measure -O qcow2 --image-opts driver=qcow2,file.driver=file,file.filename=a.qcow2
_img measure -O qcow2 --image-opts file.filename=a.qcow2
_img measure -O qcow2 --image-opts driver=raw,file.filename=r.raw
_img measure -O qcow2 --image-opts driver=qcow2,file.filename=nofile
_img measure -O qcow2 --image-opts driver=qcow2,bogus=1,file.filename=a.qcow2
_img measure -O qcow2 --image-opts --size 1M

_section "measure -l (an internal snapshot)"
qemu-img snapshot -c sn1 a.qcow2
qemu-io -c "write -P 3 1M 2M" a.qcow2 >/dev/null
_img measure -O qcow2 a.qcow2
_img measure -O qcow2 -l sn1 a.qcow2
_img measure -O qcow2 -l 1 a.qcow2
_img measure -O qcow2 -l snapshot.name=sn1 a.qcow2
_img measure -O qcow2 -l snapshot.id=1,snapshot.name=sn1 a.qcow2
_img measure -O qcow2 -l snapshot.id=2 a.qcow2
_img measure -O qcow2 -l snapshot.bogus=1 a.qcow2
_img measure -O qcow2 -l nosuch a.qcow2
_img measure -O qcow2 -l sn1 --image-opts driver=qcow2,file.filename=a.qcow2
_img measure -O qcow2 -l nosuch --image-opts driver=qcow2,file.filename=a.qcow2
_img measure -O qcow2 -l sn1 'json:{"driver":"qcow2","file":{"filename":"a.qcow2"}}'
_img measure -O bogus -l nosuch a.qcow2
_img measure -O qcow2 -l sn1 --size 1M
_img measure -O qcow2 -l sn1 r.raw
