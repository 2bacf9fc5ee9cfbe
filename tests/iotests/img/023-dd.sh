# qemu-img dd: operands, the size rule (count limits the input from its start, skip is taken
# off that; a skip past the end warns and leaves an empty output, exit 0), raw and qcow2
# outputs written block by block, and the messages for bad operands, options and files.
. ./common.rc
# The first byte of every 4 KiB of a file, and its size.
_blocks() { echo "$1: $(stat -c %s "$1") bytes, blocks $(od -An -v -tu1 -w4096 "$1" | awk '{printf "%s ", $1}')"; }
truncate -s 32k in.raw
for i in 0 1 2 3 4 5 6 7; do
    qemu-io -f raw -c "write -P $((i + 1)) $((i * 4))k 4k" in.raw >/dev/null
done
$QEMU_IMG create -q -f qcow2 -b in.raw -F raw in.qcow2
qemu-io -c 'write -P 9 8k 4k' in.qcow2 >/dev/null

_section "the size rule"
for ops in "" "bs=4k" "bs=4k count=3" "bs=4k count=3 skip=1" "bs=4k skip=1" "bs=4k count=10" \
    "bs=4k count=10 skip=2" "bs=4k skip=8" "bs=3k count=2 skip=1" "bs=5k" "count=1k bs=1" \
    "bs=1.5k count=1" "bs=4k count=1 count=2" "bs=4k count=0"; do
    rm -f out.raw
    echo "--- dd -f raw $ops"
    _img dd -f raw $ops if=in.raw of=out.raw
    _blocks out.raw
done
for ops in "bs=4k skip=9" "bs=4k count=2 skip=5"; do
    rm -f out.raw
    echo "--- dd -f raw $ops"
    _img dd -f raw $ops if=in.raw of=out.raw
    _blocks out.raw
done

_section "qcow2 input with a backing file, qcow2 output"
_img dd if=in.qcow2 of=out.raw bs=4k
_blocks out.raw
_img dd -O qcow2 if=in.qcow2 of=out.qcow2 bs=4k count=4 skip=1
qemu-io -c 'read -P 2 0 4k' -c 'read -P 9 4k 4k' -c 'read -P 4 8k 4k' out.qcow2 | grep -v '^[0-9]'
_img info out.qcow2 | grep -E '^(file format|virtual size)'
$QEMU_IMG map --output=json out.qcow2
_img check out.qcow2
_img dd -O qcow2 if=in.raw of=small.qcow2 -f raw bs=100 count=1
_img info small.qcow2 | grep -E '^virtual size'
_img dd -f raw if=in.raw of=small.raw bs=100 count=1
_blocks small.raw
_img dd -U --image-opts if=driver=raw,file.filename=in.raw of=opts.raw
cmp opts.raw in.raw && echo "opts.raw: identical to in.raw"

_section "errors"
_img dd
_img dd if=in.raw
_img dd of=out.raw
_img dd bs=0 foo
_img dd foo bs=0
_img dd if=in.raw of=out.raw foo=1
_img dd if=in.raw of=out.raw =4
_img dd if=in.raw of=out.raw bs
_img dd if=in.raw of=out.raw bs=3G
_img dd if=in.raw of=out.raw bs=-1
_img dd if=in.raw of=out.raw bs=
_img dd if=in.raw of=out.raw bs=4k=5
_img dd if=in.raw of=out.raw count=-1
_img dd if=in.raw of=out.raw count=x
_img dd if=in.raw of=out.raw skip=x
_img dd if=nonexist of=out.raw
_img dd -f qcow2 if=in.raw of=out.raw
_img dd -f foo if=in.raw of=out.raw
rm -f new.raw
_img dd -f raw -O foo if=in.raw of=new.raw
ls new.raw 2>&1 | sed 's/^ls: //'
_img dd -f raw if=in.raw of=/nonexistent-dir/x
_img dd -f raw if=in.raw of=
_img dd -q -f raw if=in.raw of=out.raw
_img dd -o x -f raw if=in.raw of=out.raw
