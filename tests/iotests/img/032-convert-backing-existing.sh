# qemu-img convert onto a backing file (-B/-F, -o backing_file), into existing targets (-n,
# --target-image-opts) and onto targets known to be zero (--target-is-zero), with qemu-img's
# refusals. Results are judged by qemu-img: check, compare, map, and reads with qemu-io.
. ./convert.rc
. ./common.rc
# What qemu-io reads at each range, pattern by pattern ("ok" or "differs").
_reads() {
    local img=$1; shift
    while [ $# -gt 0 ]; do
        if $QEMU_IO -c "read -P $1 $2 $3" "$img" | grep -q 'verification failed'; then
            echo "read -P $1 $2 $3: differs"
        else
            echo "read -P $1 $2 $3: ok"
        fi
        shift 3
    done
}
# A fresh existing target full of 9s, qcow2 of size $2, optionally over backing file $3.
_filled() {
    rm -f "$1"
    if [ -n "${3:-}" ]; then
        $REF create -q -f qcow2 -b "$3" -F qcow2 "$1" "$2"
    else
        $REF create -q -f qcow2 "$1" "$2"
    fi
    _io -c "write -P 9 0 $2" "$1"
}

$REF create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 1M' base.qcow2
$REF create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 1 0 64k' -c 'write -P 2 512k 64k' -c 'write -z 768k 64k' -c 'write -P 3 3M 64k' \
    top.qcow2
$REF create -q -f qcow2 short.qcow2 1M
_io -c 'write -P 1 0 1M' short.qcow2
$REF create -q -f qcow2 -b short.qcow2 -F qcow2 long.qcow2 4M
_io -c 'write -P 2 0 64k' long.qcow2
$REF create -q -f qcow2 lone.qcow2 4M
_io -c 'write -P 1 0 64k' -c 'write -P 5 2M 64k' lone.qcow2
truncate -s 4M lone.raw
_io -f raw -c 'write -P 1 0 64k' -c 'write -P 5 2M 64k' lone.raw

_section "-B: what the source leaves to its backing file stays unallocated"
_conv -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 b1.qcow2
_judge top.qcow2 b1.qcow2
_map b1.qcow2
$REF info b1.qcow2 | grep -E '^backing'
_conv -O qcow2 -B short.qcow2 -F qcow2 long.qcow2 b2.qcow2
_judge long.qcow2 b2.qcow2
_map b2.qcow2

_section "-B with a source without backing file: its holes read as zeros in the target"
_conv -O qcow2 -B base.qcow2 -F qcow2 lone.qcow2 b3.qcow2
_judge lone.qcow2 b3.qcow2
_map b3.qcow2
_conv -O qcow2 -B base.qcow2 -F qcow2 -f raw lone.raw b4.qcow2
_judge lone.raw b4.qcow2 -f raw
_map b4.qcow2
_conv -O qcow2 -B base.qcow2 -F qcow2 -S 0 lone.qcow2 b5.qcow2
_judge lone.qcow2 b5.qcow2
_map b5.qcow2

_section "-o backing_file"
_conv -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2 o1.qcow2
_judge top.qcow2 o1.qcow2
_map o1.qcow2
_conv -O qcow2 -o backing_file=base.qcow2 top.qcow2 o2.qcow2
_judge top.qcow2 o2.qcow2
_conv -O qcow2 -B base.qcow2 -F qcow2 -o backing_file=base.qcow2 top.qcow2 o3.qcow2
_judge top.qcow2 o3.qcow2
_conv -O qcow2 -B base.qcow2 -F qcow2 -o cluster_size=4k top.qcow2 o4.qcow2
_judge top.qcow2 o4.qcow2
_map o4.qcow2

_section "-B refusals"
_conv -O qcow2 -B base.qcow2 top.qcow2 r1.qcow2
_conv -O qcow2 -F qcow2 top.qcow2 r2.qcow2
_conv -O raw -B base.qcow2 -F qcow2 top.qcow2 r3.raw
_conv -B base.qcow2 -F qcow2 top.qcow2 r4.raw
_conv -O qcow2 -B nofile.qcow2 -F qcow2 top.qcow2 r5.qcow2
_conv -O qcow2 -B base.qcow2 -F raw top.qcow2 r6.qcow2
_judge top.qcow2 r6.qcow2
_conv -O raw -F qcow2 top.qcow2 r7.raw
_conv -O qcow2 -o backing_fmt=qcow2 top.qcow2 r8.qcow2
_conv -O qcow2 -o backing_fmt=qcow2 -B base.qcow2 top.qcow2 r9.qcow2
$REF info r9.qcow2 | grep -E '^backing'
_conv -O qcow2 -F qcow2 -o backing_file=base.qcow2 top.qcow2 r10.qcow2
$REF info r10.qcow2 | grep -E '^backing'
_conv -O qcow2 -o backing_file=base.qcow2,backing_fmt=raw -F qcow2 top.qcow2 r11.qcow2
$REF info r11.qcow2 | grep -E '^backing'
_judge top.qcow2 r11.qcow2
_conv -O raw -o backing_file=base.qcow2 top.qcow2 r12.raw
ls r1.qcow2 r2.qcow2 r3.raw r4.raw r7.raw r8.qcow2 r12.raw 2>&1 | sort

_section "-n: the existing target is written over"
_filled n1.qcow2 4M
_conv -n -O qcow2 top.qcow2 n1.qcow2
_judge top.qcow2 n1.qcow2
_map n1.qcow2
_filled n2.qcow2 4M base.qcow2
_conv -n -O qcow2 top.qcow2 n2.qcow2
_judge top.qcow2 n2.qcow2
_map n2.qcow2
_filled n3.qcow2 8M
_conv -n -O qcow2 lone.qcow2 n3.qcow2
_reads n3.qcow2 1 0 64k 0 64k 1984k 5 2M 64k 0 2112k 1984k 9 4M 4M
truncate -s 6M n4.raw
_io -f raw -c 'write -P 9 0 6M' n4.raw
_conv -n -O raw lone.qcow2 n4.raw
_reads n4.raw 1 0 64k 0 64k 1984k 5 2M 64k 9 4M 2M
_conv -n lone.qcow2 n4.raw
_conv -n -S 0 -O qcow2 lone.qcow2 n1.qcow2
_judge lone.qcow2 n1.qcow2
_map n1.qcow2

_section "-n with -B: the target's backing areas are left alone"
_filled n5.qcow2 4M base.qcow2
_conv -n -B base.qcow2 -F qcow2 -O qcow2 top.qcow2 n5.qcow2
_reads n5.qcow2 1 0 64k 9 64k 448k 2 512k 64k 9 576k 192k 0 768k 64k 9 832k 2304k 3 3M 64k
_filled n6.qcow2 4M
_conv -n -B base.qcow2 -O qcow2 lone.qcow2 n6.qcow2
_judge lone.qcow2 n6.qcow2
_filled n7.qcow2 4M
_conv -n -B base.qcow2 -F qcow2 -O qcow2 long.qcow2 n7.qcow2
_reads n7.qcow2 2 0 64k 9 64k 4032k
_filled n8.qcow2 4M
_conv -n -F qcow2 -O qcow2 top.qcow2 n8.qcow2
_judge top.qcow2 n8.qcow2
_conv -n -B base.qcow2 -F qcow2 -O raw top.qcow2 n4.raw
_reads n4.raw 1 0 64k 9 64k 448k 2 512k 64k

_section "-n refusals and sizes"
$REF create -q -f qcow2 small.qcow2 1M
_conv -n -O qcow2 top.qcow2 small.qcow2
_conv -n top.qcow2 small.qcow2
_conv -n -O qcow2 top.qcow2 nofile.qcow2
_conv -n -O qcow2 -o cluster_size=4k top.qcow2 n1.qcow2
_conv -n -o backing_file=base.qcow2 -B base.qcow2 -F qcow2 top.qcow2 n1.qcow2
_conv -n -o foo=bar nofile.qcow2 n1.qcow2
_conv -n -O bogus top.qcow2 n1.qcow2
_conv -n -c -O raw top.qcow2 n4.raw
_filled big.qcow2 8M
_conv -n -O qcow2 top.qcow2 big.qcow2
_judge top.qcow2 big.qcow2
$REF info big.qcow2 | grep 'virtual size'

_section "--target-is-zero"
$REF create -q -f qcow2 z1.qcow2 4M
_conv -n --target-is-zero -O qcow2 top.qcow2 z1.qcow2
_judge top.qcow2 z1.qcow2
_map z1.qcow2
$REF create -q -f qcow2 z2.qcow2 4M
_conv -n --target-is-zero -S 0 -O qcow2 lone.qcow2 z2.qcow2
_judge lone.qcow2 z2.qcow2
_map z2.qcow2
truncate -s 4M z3.raw
_conv -n --target-is-zero -O raw -f raw lone.raw z3.raw
_judge lone.raw z3.raw -f raw -F raw
_filled z4.qcow2 4M
_conv -n --target-is-zero -O qcow2 lone.qcow2 z4.qcow2
_reads z4.qcow2 1 0 64k 9 64k 1984k 5 2M 64k 9 2112k 1984k
$REF create -q -f qcow2 -b base.qcow2 -F qcow2 z5.qcow2
_conv -n --target-is-zero -O qcow2 lone.qcow2 z5.qcow2
_reads z5.qcow2 1 0 1M 5 2M 64k 0 2112k 1984k
_filled z6.qcow2 4M
_conv -n --target-is-zero -B base.qcow2 -F qcow2 -O qcow2 lone.qcow2 z6.qcow2
_reads z6.qcow2 9 0 4M
_conv -n --target-is-zero -B base.qcow2 -O bogus lone.qcow2 nofile.qcow2
_conv -n --target-is-zero -B base.qcow2 -l nosnap lone.qcow2 z6.qcow2
_conv --target-is-zero -O qcow2 lone.qcow2 z7.qcow2
_conv --target-is-zero -B base.qcow2 -F qcow2 -O qcow2 lone.qcow2 z7.qcow2
_conv --target-is-zero nofile.qcow2
ls z7.qcow2 2>&1

_section "--target-image-opts"
$REF create -q -f qcow2 t1.qcow2 4M
_conv -n --target-image-opts top.qcow2 driver=qcow2,file.filename=t1.qcow2
_judge top.qcow2 t1.qcow2
_map t1.qcow2
truncate -s 4M t2.raw
_conv -n --target-image-opts top.qcow2 driver=raw,file.filename=t2.raw
_judge top.qcow2 t2.raw
_filled t3.qcow2 4M
_conv -n --target-image-opts --target-is-zero lone.qcow2 driver=qcow2,file.filename=t3.qcow2
_reads t3.qcow2 1 0 64k 9 64k 1984k
_conv -n --image-opts --target-image-opts driver=qcow2,file.filename=top.qcow2 \
    driver=qcow2,file.filename=t1.qcow2
_judge top.qcow2 t1.qcow2
_conv -n --target-image-opts driver=qcow2,file.filename=t1.qcow2 t2.raw
_conv -n --target-image-opts top.qcow2 file.filename=t1.qcow2
_judge top.qcow2 t1.qcow2
_conv -n --target-image-opts top.qcow2 file.filename=t2.raw
_judge top.qcow2 t2.raw
_conv --target-image-opts top.qcow2 driver=qcow2,file.filename=t1.qcow2
_conv -n --target-image-opts -O qcow2 top.qcow2 driver=qcow2,file.filename=t1.qcow2
_conv -n --target-image-opts top.qcow2 t2.raw
_conv -n --target-image-opts top.qcow2 driver=qcow2,file.filename=nofile.qcow2
_conv -n --target-image-opts top.qcow2 driver=qcow2,file.filename=t1.qcow2,foo=bar
_conv -n --target-image-opts -o cluster_size=4k top.qcow2 driver=qcow2,file.filename=t1.qcow2
$REF create -q -f qcow2 t4.qcow2 1M
_conv -n --target-image-opts top.qcow2 driver=qcow2,file.filename=t4.qcow2

_section "interop: the same command run by qemu-img gives the same image"
_same i1.qcow2 -O qcow2 -B base.qcow2 -F qcow2 top.qcow2
_same i2.qcow2 -O qcow2 -B base.qcow2 -F qcow2 lone.qcow2
_same i3.qcow2 -O qcow2 -B short.qcow2 -F qcow2 -o cluster_size=4k long.qcow2
_same i4.qcow2 -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 -S 0 top.qcow2
_same i5.qcow2 -O qcow2 -B base.qcow2 -F qcow2 -f raw lone.raw
