# qemu-img bitmap's command line: the action options in order, -g/-b/-F and their refusals,
# the operation errors ("Operation OP on bitmap NAME failed: ..."), the directory it leaves.
. ./bitmaps.rc
. ./common.rc
$QEMU_IMG create -q -f qcow2 c.qcow2 64M
_img bitmap c.qcow2 b0
_img bitmap --add c.qcow2
_img bitmap --add c.qcow2 b0
_img bitmap --add c.qcow2 b0
_img bitmap --remove c.qcow2 nope
_img bitmap --clear c.qcow2 nope
_img bitmap --enable c.qcow2 nope
_img bitmap --disable c.qcow2 nope
for g in 1000 256 4G x -1; do _img bitmap --add -g $g c.qcow2 b2; done
_img bitmap --remove -g 64k c.qcow2 b0
_img bitmap --merge nope c.qcow2 b0
_img bitmap --merge b0 c.qcow2 nope
_img bitmap --add --disable c.qcow2 b3
_img bitmap --add --enable -g 128k c.qcow2 b4
_img bitmap -b x.raw c.qcow2 b0
_img bitmap --add -b x.raw c.qcow2 b0
_img bitmap --add -F raw c.qcow2 b0
_img bitmap --merge b0 -F raw c.qcow2 b3
_img bitmap --add c.qcow2 b0 extra
_img bitmap --add --image-opts -f qcow2 c.qcow2 b0
_img bitmap --bogus c.qcow2 b0
_img bitmap --merge
_img bitmap --add c.qcow2 ''
_img bitmap --add nonexist.qcow2 b0
_img bitmap --disable --enable c.qcow2 b0
_img bitmap --clear --add c.qcow2 b5
_img bitmap --add -g 0 c.qcow2 b9
_img bitmap --add -g 64k -g 1M c.qcow2 b10
_img bitmap --remove --remove c.qcow2 b9
_img bitmap --add --image-opts driver=qcow2,file.filename=c.qcow2 b11
_img bitmap --remove -f qcow2 c.qcow2 b11
_bitmaps c.qcow2
_img info c.qcow2
_img check c.qcow2
$QEMU_IMG create -q -f qcow2 -o cluster_size=512 small.qcow2 1M
_img bitmap --add small.qcow2 s0
_img info --output=json small.qcow2
_img bitmap --remove small.qcow2 s0
_bitmaps small.qcow2
_img check small.qcow2
