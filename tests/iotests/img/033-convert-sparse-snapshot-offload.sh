# qemu-img convert: sparse detection (-S: the default 4k, 0, sizes against the target's cluster
# size, validation), from an internal snapshot (-l; 7.2 has no -s), and copy offloading (-C
# and its refusals). Judged by qemu-img check, compare and map of the targets.
. ./convert.rc
. ./common.rc

# A raw file with zero runs of many lengths inside data, and a qcow2 image holding the same.
truncate -s 4M s.raw
_io -f raw -c 'write -P 1 0 4k' -c 'write -P 0 4k 124k' -c 'write -P 2 128k 512' \
    -c 'write -P 0 129k 1k' -c 'write -P 3 130k 1k' -c 'write -P 0 131k 3k' -c 'write -P 4 134k 2k' \
    -c 'write -P 0 136k 56k' -c 'write -P 5 192k 8k' -c 'write -P 0 200k 1M' \
    -c 'write -P 6 1224k 4k' -c 'write -P 0 2M 2M' -c 'write -P 7 4092k 4k' s.raw
$REF convert -f raw -O qcow2 -S 0 s.raw full.qcow2

_section "-S: default and sizes"
for S in '' 512 1k 1.5k 4k 8k 64k 1M 16M; do
    _conv ${S:+-S $S} -f raw -O qcow2 s.raw d$S.qcow2
    _judge s.raw d$S.qcow2 -f raw
    _map d$S.qcow2
done
_conv -S 0 -f raw -O qcow2 s.raw z.qcow2
_map z.qcow2
_conv -O qcow2 full.qcow2 f.qcow2
_judge full.qcow2 f.qcow2
_map f.qcow2
_conv -S 0 -O qcow2 full.qcow2 f0.qcow2
_map f0.qcow2

_section "-S against the target's cluster size"
for C in 512 4k 2M; do
    for S in 512 1k 8k 64k; do
        _conv -S $S -f raw -O qcow2 -o cluster_size=$C s.raw c$C-$S.qcow2
        _judge s.raw c$C-$S.qcow2 -f raw
        _map c$C-$S.qcow2
    done
done

_section "-S with a raw target"
for S in '' 512 8k 1M 0; do
    _conv ${S:+-S $S} -f raw -O raw s.raw r$S.raw
    _judge s.raw r$S.raw -f raw -F raw
    _map -f raw r$S.raw
done

_section "-S validation"
for S in 100 513 1.2k 16385k 32M abc -1 1T ''; do
    _conv -S "$S" -f raw s.raw bad.raw
done
ls bad.raw 2>&1

_section "-l: from an internal snapshot"
$REF create -q -f qcow2 snap.qcow2 4M
_io -c 'write -P 1 0 1M' snap.qcow2
$REF snapshot -c s1 snap.qcow2
_io -c 'write -P 2 0 512k' -c 'write -P 3 2M 64k' -c 'write -z 3M 64k' snap.qcow2
$REF snapshot -c s2 snap.qcow2
_io -c 'write -P 4 3M 64k' -c 'discard 0 64k' snap.qcow2
$REF snapshot -c 1 snap.qcow2
_io -c 'write -P 5 1M 64k' snap.qcow2
$REF resize -q snap.qcow2 6M
_io -c 'write -P 6 5M 64k' snap.qcow2
$REF snapshot -l snap.qcow2 | cut -c1-16
for L in s1 s2 1 3 snapshot.name=s1 snapshot.id=2 snapshot.id=3,snapshot.name=1 \
    snapshot.name=1 snapshot.id=1,snapshot.id=2; do
    _conv -l "$L" -O qcow2 snap.qcow2 l.qcow2
    $REF info l.qcow2 | grep 'virtual size'
    $REF check -q l.qcow2 && echo "check: ok"
    _map l.qcow2
    $REF convert -O raw l.qcow2 l.raw
    md5sum < l.raw
    rm -f l.qcow2 l.raw
done
_conv -l s2 -O raw snap.qcow2 l2.raw
md5sum < l2.raw
_conv -l s2 -O qcow2 -o cluster_size=4k snap.qcow2 l3.qcow2
$REF check -q l3.qcow2 && echo "check: ok"
_map l3.qcow2
_conv -l s2 -C -O qcow2 snap.qcow2 l4.qcow2
_map l4.qcow2
_conv -l s2 -p -O qcow2 snap.qcow2 l5.qcow2
$REF create -q -f qcow2 l6.qcow2 6M
_conv -l s1 -n -O qcow2 snap.qcow2 l6.qcow2
_map l6.qcow2
$REF snapshot -l snap.qcow2 | cut -c1-16
$REF check -q snap.qcow2 && echo "snap.qcow2 check: ok"

_section "-l errors"
for L in nosuch id=1 snapshot.id=1,snapshot.name=s2 '' 's1,x' snapshot.name=s1,,x \
    snapshot.id=; do
    _conv -l "$L" -O qcow2 snap.qcow2 le.qcow2
done
_conv -l snapshot.foo=1 -O qcow2 snap.qcow2 le.qcow2
_conv -l snapshot.name=s1,x -O qcow2 snap.qcow2 le.qcow2
_conv -l snapshot.foo=1 -O qcow2 nofile.qcow2 le.qcow2
_conv -l s1 -O qcow2 snap.qcow2 snap.qcow2 le.qcow2
_conv -l s1 -O qcow2 nofile.qcow2 snap.qcow2 le.qcow2
_conv -l s1 -O bogus snap.qcow2 le.qcow2
_conv -l nosuch -O qcow2 -o foo=bar snap.qcow2 le.qcow2
_conv -l s1 -O qcow2 -o foo=bar snap.qcow2 le.qcow2
_conv -l s1 -n snap.qcow2 nofile.raw
_conv -l s1 snap.qcow2
$REF convert -O raw snap.qcow2 snap.raw
_conv -l s1 -f raw snap.raw le.raw
_conv -s s1 -O qcow2 snap.qcow2 le.qcow2
ls le.qcow2 le.raw 2>&1

_section "-C: copy offloading"
$REF create -q -f qcow2 a.qcow2 4M
_io -c 'write -P 1 0 1M' -c 'write -z 2M 64k' -c 'write -P 0 3M 64k' a.qcow2
_conv -C -O qcow2 a.qcow2 o1.qcow2
_judge a.qcow2 o1.qcow2
_map o1.qcow2
_conv -C -O raw a.qcow2 o2.raw
_judge a.qcow2 o2.raw
_map -f raw o2.raw
_conv -C -f raw -O raw s.raw o3.raw
_judge s.raw o3.raw -f raw -F raw
_map -f raw o3.raw
_conv -C -f raw -O qcow2 s.raw o4.qcow2
_judge s.raw o4.qcow2 -f raw
_map o4.qcow2
_conv -C -O qcow2 -o cluster_size=4k -f raw s.raw o5.qcow2
_map o5.qcow2
_conv -C -n -f raw -O raw s.raw o3.raw
_judge s.raw o3.raw -f raw -F raw
$REF create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 1M' base.qcow2
$REF create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 2 512k 64k' -c 'write -P 0 3M 64k' top.qcow2
_conv -C -O qcow2 -B base.qcow2 -F qcow2 top.qcow2 o6.qcow2
_judge top.qcow2 o6.qcow2
_map o6.qcow2
_conv -C -p -m 1 -O qcow2 a.qcow2 o7.qcow2
_conv -C -W -O qcow2 a.qcow2 o8.qcow2
_judge a.qcow2 o8.qcow2

_section "-C refusals"
_conv -C -c -O qcow2 a.qcow2 e.qcow2
_conv -c -C -O raw a.qcow2 e.raw
_conv -C -S 0 -O qcow2 a.qcow2 e.qcow2
_conv -S 4k -C a.qcow2 e.raw
_conv -C --salvage a.qcow2 e.raw
_conv -C -S 4k -c --salvage a.qcow2 e.raw
_conv -S 4k --salvage -C nofile e.raw
_conv -C -S 4k --target-image-opts nofile e.raw
_conv -C -S 4k nofile
ls e.qcow2 e.raw 2>&1

_section "interop: the same command run by qemu-img gives the same image"
_same i1.qcow2 -l s2 -O qcow2 snap.qcow2
_same i2.qcow2 -l snapshot.id=3 -O qcow2 -o cluster_size=4k snap.qcow2
_same i3.qcow2 -C -O qcow2 a.qcow2
_same i4.qcow2 -C -f raw -O qcow2 -o cluster_size=512 s.raw
_same i5.qcow2 -S 1k -f raw -O qcow2 -o cluster_size=512 s.raw
_same i6.qcow2 -S 64k -f raw -O qcow2 -o cluster_size=4k s.raw
