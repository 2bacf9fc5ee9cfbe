# qemu-img convert: qcow2 and raw sources and targets, creation options, sparse detection (-S),
# progress (-p), existing targets (-n), backing files (-B), several sources, -m/-W, errors
# (qemu-compat.md §3.5). The results are judged by qemu-img itself: check, compare and map.
. ./convert.rc
. ./common.rc

$REF create -q -f qcow2 a.qcow2 64M
_io -c 'write -P 1 0 64k' -c 'write -P 2 1M 64k' -c 'write -z 2M 64k' -c 'write -P 3 10M 100k' \
    -c 'write -P 4 63M 1M' a.qcow2
truncate -s 1M s.raw
_io -f raw -c 'write -P 1 0 4k' -c 'write -P 0 4k 124k' -c 'write -P 2 200k 4k' \
    -c 'write -P 0 512k 8k' -c 'write -P 3 520k 1k' s.raw
$REF create -q -f qcow2 big.qcow2 20M
_io -c 'write -P 5 0 10M' -c 'write -P 6 15M 3M' big.qcow2
$REF create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 1M' base.qcow2
$REF create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 2 512k 64k' -c 'write -z 768k 64k' -c 'write -P 3 3M 64k' top.qcow2
$REF create -q -f qcow2 empty.qcow2 10M
truncate -s 1000000 odd.raw
_io -f raw -c 'write -P 7 990000 10000' odd.raw

_section "qcow2 and raw targets"
_conv a.qcow2 a.raw
_judge a.qcow2 a.raw
_conv -O qcow2 a.qcow2 b.qcow2
_judge a.qcow2 b.qcow2
_map b.qcow2
_conv -f qcow2 -O qcow2 a.qcow2 b2.qcow2
_judge a.qcow2 b2.qcow2
_conv -O qcow2 a.raw b3.qcow2
_judge a.raw b3.qcow2
_map b3.qcow2
_conv -O raw -f raw a.raw a2.raw
_judge a.raw a2.raw -f raw -F raw
_conv -O qcow2 odd.raw odd.qcow2
_judge odd.raw odd.qcow2
$REF info odd.qcow2 | grep 'virtual size'
_conv -O qcow2 empty.qcow2 empty2.qcow2
_judge empty.qcow2 empty2.qcow2
_map empty2.qcow2

_section "creation options"
_conv -O qcow2 -o cluster_size=4k a.qcow2 c1.qcow2
_judge a.qcow2 c1.qcow2
$REF info c1.qcow2 | grep cluster_size
_conv -O qcow2 -o compat=0.10 a.qcow2 c2.qcow2
_judge a.qcow2 c2.qcow2
$REF info c2.qcow2 | grep compat
_conv -O qcow2 -o refcount_bits=1,lazy_refcounts=on a.qcow2 c3.qcow2
_judge a.qcow2 c3.qcow2
_conv -O qcow2 -o cluster_size=128k,compression_type=zstd a.qcow2 c4.qcow2
_judge a.qcow2 c4.qcow2
_map c4.qcow2
_conv -O qcow2 -o cluster_size=2M a.qcow2 c5.qcow2
_judge a.qcow2 c5.qcow2
_map c5.qcow2
_conv -O qcow2 -o preallocation=metadata a.qcow2 c6.qcow2
_judge a.qcow2 c6.qcow2
_conv -O qcow2 -o size=1M a.qcow2 c7.qcow2
$REF info c7.qcow2 | grep 'virtual size'

_section "sparse detection"
_conv -f raw -O qcow2 s.raw s1.qcow2
_judge s.raw s1.qcow2
_map s1.qcow2
_conv -S 0 -f raw -O qcow2 s.raw s2.qcow2
_judge s.raw s2.qcow2
_map s2.qcow2
_conv -S 64k -f raw -O qcow2 s.raw s3.qcow2
_map s3.qcow2
_conv -S 512 -O qcow2 -o cluster_size=512 -f raw s.raw s4.qcow2
_judge s.raw s4.qcow2
_map s4.qcow2
_conv -S 8k -f raw -O qcow2 -o cluster_size=4k s.raw s5.qcow2
_judge s.raw s5.qcow2
_map s5.qcow2
_conv -S 0 -O qcow2 a.qcow2 s6.qcow2
_judge a.qcow2 s6.qcow2
_map s6.qcow2

_section "progress and quiet"
_conv -p -O qcow2 a.qcow2 p1.qcow2
_conv -p -O raw big.qcow2 p2.raw
_conv -p -O qcow2 -o cluster_size=4k big.qcow2 p3.qcow2
_conv -p -O qcow2 empty.qcow2 p4.qcow2
_conv -p -q -O qcow2 a.qcow2 p5.qcow2
_conv -q -O qcow2 a.qcow2 p6.qcow2
_conv -p -S 0 -O qcow2 s.raw p7.qcow2

_section "existing targets (-n)"
$REF create -q -f qcow2 n1.qcow2 80M
_io -c 'write -P 9 0 80M' n1.qcow2
_conv -n -O qcow2 a.qcow2 n1.qcow2
_judge a.qcow2 n1.qcow2
_map n1.qcow2
truncate -s 80M n2.raw
_io -f raw -c 'write -P 9 0 80M' n2.raw
_conv -n a.qcow2 n2.raw
$REF compare -f raw -F raw a.raw n2.raw
$REF create -q -f qcow2 n3.qcow2 64M
_conv -n --target-is-zero -O qcow2 a.qcow2 n3.qcow2
_judge a.qcow2 n3.qcow2
_map n3.qcow2
_conv -n -O qcow2 a.qcow2 empty.qcow2
_conv -n a.qcow2 n3.qcow2
_conv -n -O qcow2 a.qcow2 nofile.qcow2
_conv -n -O qcow2 -o cluster_size=4k a.qcow2 n3.qcow2

_section "backing files"
_conv -O qcow2 top.qcow2 flat.qcow2
_judge top.qcow2 flat.qcow2
_map flat.qcow2
_conv -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 thin.qcow2
_judge top.qcow2 thin.qcow2
_map thin.qcow2
$REF info thin.qcow2 | grep -E '^backing'
_conv -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2 top.qcow2 thin2.qcow2
_judge top.qcow2 thin2.qcow2
_conv -O raw top.qcow2 flat.raw
_judge top.qcow2 flat.raw

_section "several sources, coroutines, out of order"
_conv -O qcow2 a.qcow2 s.raw big.qcow2 cat.qcow2
$REF info cat.qcow2 | grep 'virtual size'
$REF check -q cat.qcow2 && echo "check: ok"
$REF convert -O raw a.qcow2 s.raw big.qcow2 cat-ref.raw
$REF compare -f raw cat-ref.raw cat.qcow2
_conv -m 1 -O qcow2 big.qcow2 m1.qcow2
_judge big.qcow2 m1.qcow2
_conv -m 16 -O qcow2 big.qcow2 m16.qcow2
_judge big.qcow2 m16.qcow2
_map m16.qcow2
_conv -W -m 16 -O qcow2 big.qcow2 w.qcow2
_judge big.qcow2 w.qcow2
_conv -t none -T writeback -O qcow2 big.qcow2 t.qcow2
_judge big.qcow2 t.qcow2
_conv --image-opts -O qcow2 driver=qcow2,file.filename=a.qcow2 io.qcow2
_judge a.qcow2 io.qcow2

_section "errors"
_conv
_conv a.qcow2
_conv nofile.qcow2 out.qcow2
_conv -f qcow2 s.raw out.qcow2
_conv -O bogus a.qcow2 out.qcow2
_conv -O bogus nofile.qcow2 out.qcow2
_conv -O qcow2 -o foo=1 a.qcow2 out.qcow2
_conv -O qcow2 -o cluster_size=1000 a.qcow2 out.qcow2
_conv -O qcow2 -o compat=0.10,refcount_bits=8 a.qcow2 out.qcow2
_conv -O qcow2 -o compat=5 a.qcow2 out.qcow2
_conv -O qcow2 -o preallocation=foo a.qcow2 out.qcow2
_conv -O qcow2 -o extended_l2=maybe a.qcow2 out.qcow2
_conv -O raw -o cluster_size=4k a.qcow2 out.raw
_conv -c -O raw a.qcow2 out.raw
_conv -S 100 a.qcow2 out.raw
_conv -S 32M a.qcow2 out.raw
_conv -S abc a.qcow2 out.raw
_conv -m 0 a.qcow2 out.raw
_conv -m 17 a.qcow2 out.raw
_conv -m x a.qcow2 out.raw
_conv --target-is-zero a.qcow2 out.raw
_conv -O qcow2 -B base.qcow2 top.qcow2 out.qcow2
_conv -O raw -B base.qcow2 -F qcow2 top.qcow2 out.raw
_conv -O qcow2 -B nofile.qcow2 -F qcow2 top.qcow2 out.qcow2
_conv --bogus a.qcow2 out.raw
_conv -O
_conv --image-opts -f qcow2 a.qcow2 out.raw
_conv -p nofile.qcow2 out.raw
_conv -p -n a.qcow2 empty.qcow2
