# qemu-img amend on qcow2 (qemu-compat.md §3.8): arguments, the options amend refuses and how,
# compat=0.10 (zero clusters, preallocated zero clusters, compressed clusters, snapshots and
# backing files) and back to 1.1, lazy_refcounts, refcount_bits at every width, backing_file
# and backing_fmt, size, and -p. Images are written with qemu-io and qemu-img (snapshot,
# bitmap) so both tools start from the same bytes; qemu-img itself (not $QEMU_IMG) judges
# every result with info, check and compare, qemu-io reads the data back, and md5 sums and
# `od` show byte identity with qemu-img's own result.
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_check() { echo "--- check $1"; qemu-img check "$1" 2>&1; echo "check status: $?"; }
_compare() { echo "--- compare $*"; qemu-img compare "$@" 2>&1; echo "compare status: $?"; }
_info() {
    echo "--- info $1"
    qemu-img info "$1" 2>&1 | grep -v -e '^disk size' -e '^image:' |
        sed -e 's/[0-9-]\{10\} [0-9:]\{8\}/DATE/'
}
_read() { echo "--- read $*"; $QEMU_IO -r "$@" 2>&1 | grep -v -e '^read' -e 'ops/sec'; }
_header() { echo "--- header $1"; od -A d -t x1 -N 512 "$1"; }
# Runs amend and prints the image's md5 afterwards (unchanged on a refusal).
_amend() {
    local img=${!#}
    _img amend "$@"
    [ -f "$img" ] && _sum "$img"
}
# For images with snapshots (their dates make md5 sums change from run to run): runs amend
# on the image and qemu-img amend on a copy made before, and compares the two files.
_amend_cmp() {
    local img=${!#}
    cp "$img" ref.qcow2
    qemu-img amend "$@" 2>/dev/null
    mv "$img" tmp.qcow2; mv ref.qcow2 "$img"; mv tmp.qcow2 ref.qcow2
    _img amend "$@"
    cmp -s "$img" ref.qcow2 && echo "$img: same bytes as qemu-img's" || echo "$img: differs from qemu-img's"
}

qemu-img create -q -f qcow2 a.qcow2 1M
truncate -s 1M r.raw

_section "arguments"
_sum a.qcow2
_img amend
_img amend a.qcow2
_img amend -o compat=1.1
_img amend -o compat=1.1 a.qcow2 b.qcow2
_img amend -x -o compat=1.1 a.qcow2
_img amend --bogus -o compat=1.1 a.qcow2
_img amend -f qcow2 --image-opts -o compat=1.1 a.qcow2
_img amend -t bogus -o compat=1.1 a.qcow2
_img amend -o compat=1.1 nofile.qcow2
_img amend -o compat=1.1, a.qcow2
_img amend -o compat=1.1,,, a.qcow2
_img amend -f raw -o compat=1.1 a.qcow2
_img amend -f raw -o size=2M r.raw
_img amend -o size=2M r.raw
_img amend -f raw -o help r.raw
_img amend -f bogus -o compat=1.1 a.qcow2
_img amend -o help a.qcow2
_img amend -o '?' a.qcow2
_img amend -o help -o compat=0.10 a.qcow2
_img amend -o compat=0.10,help a.qcow2
_sum a.qcow2

_section "refused options"
for o in cluster_size=4k extended_l2=on compression_type=zstd preallocation=metadata \
         encryption=on encrypt.format=luks encrypt.key-secret=s0 encrypt.cipher-alg=aes-128 \
         foo=bar encrypt.bogus=1 compat=0.10,foo=1 compat=0.9 compat= \
         encrypt.new-secret=x encrypt.old-secret=x encrypt.state=active encrypt.keyslot=1 \
         encrypt.iter-time=x encrypt.new-secret=x,compat=0.10 lazy_refcounts=maybe \
         data_file_raw=yes data_file=x.raw data_file_raw=on \
         refcount_bits=x refcount_bits=3 refcount_bits=0 refcount_bits=128 refcount_bits=-1 \
         size=abc size=1.5 size=3000001 \
         backing_file=a.qcow2 backing_fmt=qcow2 backing_file= ; do
    echo "-- -o $o"
    _amend -o "$o" a.qcow2
done
_check a.qcow2

_section "accepted without change"
_amend -o compat=1.1 a.qcow2
_amend -o compat=v3 a.qcow2
_amend -o lazy_refcounts=off a.qcow2
_amend -o refcount_bits=16 a.qcow2
_amend -o data_file_raw=off a.qcow2
_amend -o size=0 a.qcow2
_amend -o size=1M a.qcow2
_amend -t none -o compat=1.1 a.qcow2
_amend --force -o compat=1.1 a.qcow2
_amend --image-opts -o compat=1.1 driver=qcow2,file.filename=a.qcow2

_section "compat=0.10: data, zero and compressed clusters, no backing file"
qemu-img create -q -f qcow2 d.qcow2 4M
_io -c 'write -P 1 0 64k' -c 'write -z 64k 64k' -c 'write -P 2 128k 64k' \
    -c 'write -z 128k 64k' -c 'write -c -P 3 256k 64k' -c 'write -c -P 3 320k 64k' \
    -c 'write -P 4 1M 4k' \
    -c 'write -z 1028k 4k' -c 'write -z -u 2M 128k' d.qcow2
cp d.qcow2 d0.qcow2
_amend -o compat=0.10 d.qcow2
_info d.qcow2
_check d.qcow2
_compare d0.qcow2 d.qcow2
_header d.qcow2
_read -c 'read -P 1 0 64k' -c 'read -P 0 64k 192k' -c 'read -P 3 256k 128k' \
    -c 'read -P 4 1M 4k' -c 'read -P 0 1028k 1020k' -c 'read -P 0 2M 2M' d.qcow2
_amend -o compat=0.10 d.qcow2
_amend -o compat=v2 d.qcow2
_amend -o lazy_refcounts=on d.qcow2
_amend -o refcount_bits=8 d.qcow2
_amend -o compat=0.10,refcount_bits=8 d.qcow2
_amend -o compat=1.1,refcount_bits=8,lazy_refcounts=on d.qcow2
_info d.qcow2
_amend -o compat=0.10 d.qcow2
_amend -o refcount_bits=16,lazy_refcounts=off d.qcow2
_info d.qcow2
_check d.qcow2
_compare d0.qcow2 d.qcow2

_section "compat=1.1 from 0.10"
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M
_io -c 'write -P 5 0 64k' -c 'write -c -P 6 64k 64k' v2.qcow2
_amend -o compat=1.1 v2.qcow2
_info v2.qcow2
_header v2.qcow2
_check v2.qcow2
_read -c 'read -P 5 0 64k' -c 'read -P 6 64k 64k' v2.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 l.qcow2 1M
_amend -o lazy_refcounts=on l.qcow2
_amend -o lazy_refcounts=on,compat=1.1 l.qcow2
_info l.qcow2
_amend -o lazy_refcounts=off l.qcow2
_info l.qcow2

_section "compat=0.10 with a backing file and snapshots"
qemu-img create -q -f qcow2 b.qcow2 1M
_io -c 'write -P 9 0 1M' b.qcow2
qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 o.qcow2
# qemu-img 7.2 flags a preallocated zero cluster COPIED when its L2 table is not shared,
# even if a snapshot shares the cluster (check then finds an error): the preallocated zero
# clusters here are written after the last snapshot. qblock sets COPIED from the cluster's
# refcount (zero_expand.cc).
_io -c 'write -z 0 64k' -c 'write -P 3 64k 64k' -c 'write -z -u 320k 64k' o.qcow2
qemu-img snapshot -c s1 o.qcow2
_io -c 'write -z 192k 64k' -c 'write -c -P 5 256k 64k' -c 'write -z 64k 4k' o.qcow2
qemu-img snapshot -c s2 o.qcow2
_io -c 'write -z 768k 64k' -c 'write -P 7 512k 64k' -c 'write -z 512k 64k' o.qcow2
cp o.qcow2 o0.qcow2
_amend_cmp -o compat=0.10 o.qcow2
_info o.qcow2
_check o.qcow2
_compare o0.qcow2 o.qcow2
_header o.qcow2
_read -c 'read -P 0 0 64k' -c 'read -P 0 64k 4k' -c 'read -P 3 68k 60k' -c 'read -P 9 128k 64k' \
    -c 'read -P 0 192k 64k' -c 'read -P 5 256k 64k' -c 'read -P 0 320k 64k' \
    -c 'read -P 0 512k 64k' -c 'read -P 0 768k 64k' -c 'read -P 9 832k 192k' o.qcow2
for s in s1 s2; do
    echo "--- snapshot $s"
    qemu-img snapshot -a $s o.qcow2
    qemu-img snapshot -a $s o0.qcow2
    _compare o0.qcow2 o.qcow2
done
_check o.qcow2
_amend_cmp -o backing_file=b.qcow2 o.qcow2
_amend_cmp -o backing_fmt=qcow2 o.qcow2
_amend_cmp -o backing_file=b.qcow2,backing_fmt=raw o.qcow2
_amend_cmp -o backing_file=./b.qcow2,backing_fmt=qcow2 o.qcow2
_amend_cmp -o backing_file=b.qcow2,backing_fmt=qcow2 o.qcow2
_amend_cmp -o compat=1.1 o.qcow2
_info o.qcow2
_check o.qcow2

_section "refcount_bits"
qemu-img create -q -f qcow2 rc.qcow2 8M
_io -c 'write -P 1 0 1M' -c 'write -c -P 2 2M 256k' -c 'write -z 4M 64k' rc.qcow2
qemu-img snapshot -c s1 rc.qcow2
_io -c 'write -P 3 512k 64k' rc.qcow2
cp rc.qcow2 rc0.qcow2
_amend_cmp -o refcount_bits=1 rc.qcow2
for bits in 2 4 8 32 64 16 64 1 2; do
    echo "-- refcount_bits=$bits"
    _amend_cmp -o refcount_bits=$bits rc.qcow2
    qemu-img info rc.qcow2 | grep 'refcount bits'
    qemu-img check rc.qcow2 2>&1 | head -1
    qemu-img compare rc0.qcow2 rc.qcow2
done
qemu-img snapshot -d s1 rc.qcow2
qemu-img snapshot -d s1 rc0.qcow2
_amend_cmp -o refcount_bits=1 rc.qcow2
qemu-img info rc.qcow2 | grep 'refcount bits'
_check rc.qcow2
_compare rc0.qcow2 rc.qcow2
_amend_cmp -o refcount_bits=16 rc.qcow2
_check rc.qcow2
_read -c 'read -P 1 0 512k' -c 'read -P 3 512k 64k' -c 'read -P 1 576k 448k' \
    -c 'read -P 2 2M 256k' -c 'read -P 0 4M 64k' rc.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 rv2.qcow2 1M
_img amend -o compat=1.1,refcount_bits=1 rv2.qcow2
_img amend -o compat=0.10 rv2.qcow2
_info rv2.qcow2

_section "size"
qemu-img create -q -f qcow2 s.qcow2 1M
_io -c 'write -P 1 0 64k' -c 'write -P 2 960k 64k' s.qcow2
_amend -o size=3M s.qcow2
_amend -o size=3000001 s.qcow2
_amend -o size=512k s.qcow2
_amend -o size=2M,compat=0.10 s.qcow2
_info s.qcow2
_check s.qcow2
_read -c 'read -P 1 0 64k' -c 'read -P 0 64k 1984k' s.qcow2

_section "dirty images (lazy refcounts, not closed)"
# The open repairs the refcounts (its messages are part of amend's output); the bytes of the
# rebuilt structures are check -r's business (019), so contents are compared here.
for o in compat=0.10 lazy_refcounts=off; do
    echo "-- -o $o"
    qemu-img create -q -f qcow2 -o lazy_refcounts=on z.qcow2 1M
    # (inside bash -c, whose stderr is discarded: the shell's "Aborted" line names a pid)
    bash -c "$QEMU_IO -c 'write -P 1 0 64k' -c 'write -P 2 512k 64k' -c abort z.qcow2; true" \
        >/dev/null 2>&1
    _img amend -o $o z.qcow2
    _info z.qcow2
    _check z.qcow2
    _read -c 'read -P 1 0 64k' -c 'read -P 0 64k 448k' -c 'read -P 2 512k 64k' z.qcow2
done

_section "refused downgrades"
qemu-img create -q -f qcow2 -o refcount_bits=8 r8.qcow2 1M
_amend -o compat=0.10 r8.qcow2

_section "progress"
qemu-img create -q -f qcow2 p.qcow2 1M
_io -c 'write -z 0 64k' p.qcow2
_img amend -p -o lazy_refcounts=on p.qcow2
_img amend -p -o size=2M p.qcow2
_img amend -p -o compat=1.1 p.qcow2
_img amend -p -o lazy_refcounts=off,compat=0.10 p.qcow2
_img amend -p -o compat=1.1 p.qcow2
_img amend -p -q -o compat=0.10 p.qcow2
_img amend -p -o compat=0.10,refcount_bits=8 p.qcow2
_img amend -p -o foo=bar p.qcow2
_img amend -p -o compat=bogus p.qcow2
_img amend -p -t bogus -o compat=1.1 p.qcow2
_img amend -p -o compat=1.1 nofile.qcow2
_img amend -p -f raw -o compat=1.1 r.raw
_img amend -p -o compat=1.1 p.qcow2 q.qcow2
_img amend -p -o compat=1.1, p.qcow2
_img amend -p p.qcow2
_img amend -p -o help p.qcow2 | tail -n 3
_info p.qcow2
