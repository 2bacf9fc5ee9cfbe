# create and convert onto an image that is in use: the target's write lock is taken before
# anything is truncated, so the image stays as it was (qemu-img 7.2). The image is in use by
# convert itself (the same file as source and target) or by a qemu-nbd serving it; md5 sums
# show it is untouched. qemu-nbd listens on a Unix socket in the test directory and is stopped
# at the end.
. ./common.rc
$QEMU_IMG create -q -f qcow2 v.qcow2 1M
qemu-io -c 'write -P 1 0 64k' v.qcow2 >/dev/null
truncate -s 1M r.raw
qemu-io -f raw -c 'write -P 2 0 64k' r.raw >/dev/null
_sum v.qcow2
_sum r.raw

_section "convert onto its own source"
_img convert -O qcow2 v.qcow2 v.qcow2
_sum v.qcow2
_img convert -O raw v.qcow2 v.qcow2
_sum v.qcow2
_img convert -f raw -O raw r.raw r.raw
_sum r.raw

_section "create and convert onto an image qemu-nbd serves"
qemu-nbd -f qcow2 -k "$TEST_DIR/nbd.sock" v.qcow2 2>/dev/null &
nbd_pid=$!
for _ in $(seq 100); do [ -S "$TEST_DIR/nbd.sock" ] && break; sleep 0.05; done
_img create -f qcow2 v.qcow2 64M
_img create -f raw v.qcow2 64M
_img create -f qcow2 -o preallocation=full v.qcow2 2M
_img convert -f raw -O qcow2 r.raw v.qcow2
_img convert -f raw -O raw r.raw v.qcow2
_img convert -n -f raw -O qcow2 r.raw v.qcow2
kill $nbd_pid; wait $nbd_pid 2>/dev/null
_sum v.qcow2
qemu-img check v.qcow2
qemu-io -r -c 'read -P 1 0 64k' v.qcow2 | grep -c '^read 65536/65536'
