# qemu-img commit (qemu-compat.md §3.10): chains of two and three images, the top committed
# into its backing file or (-b) into an image further down, -d, -q, -p, raw and qcow2 bases, a
# base shorter than the top, and every error. After each commit qemu-io (not $QEMU_IMG) reads
# the data back through the chain and in the base alone, qemu-img checks and maps the images;
# the emptied top is compared byte for byte with what qemu-img 7.2 leaves (md5 and size).
. ./common.rc
QEMU_IO=${QEMU_IO:-qemu-io}
_io() { $QEMU_IO "$@" >/dev/null; }
_commit() {
    echo "--- commit $*"
    # -p prints one "    (P.PP/100%)\r" per step of the job: how many depends on the job's
    # internals, so only the first and the last are kept.
    stdbuf -oL $QEMU_IMG commit "$@" 2>&1 | tr '\r' '~' |
        sed -e 's/^\(    (0.00\/100%)~\).*\(    (100.00\/100%)~\)$/\1...\2/'
    echo "exit status: ${PIPESTATUS[0]}"
}
# Where the committed data lands in the base depends on the order of the job's writes, so
# host offsets and fragmentation are left out: the maps show the allocation, check consistency.
_check() { echo "--- check $1"; qemu-img check -q "$1" 2>&1; echo "check status: $?"; }
# Without the offsets, neighbouring extents that differed only in them are merged again.
_map() {
    echo "--- map $*"
    qemu-img map --output=json "$@" 2>&1 | sed -e 's/, "offset": [0-9]*//' -e 's/^\[//' -e 's/[],]$//' |
        awk -F', "length": ' '
            { split($1, a, ": "); start = a[2]; n = index($2, ","); len = substr($2, 1, n - 1)
              rest = substr($2, n) }
            NR > 1 && rest == prest && start == pstart + plen { plen += len; next }
            NR > 1 { out[k++] = "{ \"start\": " pstart ", \"length\": " plen prest }
            { pstart = start; plen = len; prest = rest }
            END { out[k++] = "{ \"start\": " pstart ", \"length\": " plen prest
                  for (i = 0; i < k; i++) printf "%s%s%s\n", (i ? "" : "["), out[i], (i < k - 1 ? "," : "]") }'
}
_read() { echo "--- read $*"; $QEMU_IO -r "$@" | grep -v '^[0-9.]* [A-Za-z]*, [0-9]* ops; \|^read [0-9]'; }

# base (4M): 1 in [0, 1M), 0x0b at 3M; mid: 2 in [512k, 1.5M); top: 3 in [1M, 1.5M) and
# [2M, 2M+64k), a zero write over 3M, a discard of nothing at 3.5M.
_chain() {
    rm -f base.qcow2 base.raw mid.qcow2 top.qcow2
    qemu-img create -q -f qcow2 base.qcow2 4M
    _io -c 'write -P 1 0 1M' -c 'write -P 0x0b 3M 64k' base.qcow2
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2
    _io -c 'write -P 2 512k 1M' mid.qcow2
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
    _io -c 'write -P 3 1M 512k' -c 'write -P 3 2M 64k' -c 'write -z 3M 64k' top.qcow2
}
# The chain's content, read through the top (any commit must leave it).
_content() {
    _read -c 'read -P 1 0 512k' -c 'read -P 2 512k 512k' -c 'read -P 3 1M 512k' \
        -c 'read -P 0 1536k 512k' -c 'read -P 3 2M 64k' -c 'read -P 0 2112k 960k' \
        -c 'read -P 0 3M 1M' "$1"
}

_section "two images: top into its backing file"
qemu-img create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 1M' -c 'write -P 0x0b 3M 64k' base.qcow2
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 3 1M 512k' -c 'write -P 3 2M 64k' -c 'write -z 3M 64k' top.qcow2
_commit top.qcow2
_read -c 'read -P 1 0 1M' -c 'read -P 3 1M 512k' -c 'read -P 3 2M 64k' -c 'read -P 0 3M 64k' \
    base.qcow2
_map top.qcow2
_map base.qcow2
_check top.qcow2
_check base.qcow2
_sum top.qcow2

_section "three images: top into mid"
_chain
_commit top.qcow2
_content top.qcow2
_read -c 'read -P 1 0 512k' -c 'read -P 2 512k 512k' -c 'read -P 3 1M 512k' \
    -c 'read -P 3 2M 64k' -c 'read -P 0 3M 64k' mid.qcow2
_map top.qcow2
_map mid.qcow2
_map base.qcow2
_check top.qcow2
_check mid.qcow2
_sum top.qcow2
_sum base.qcow2

_section "three images: -b base (implies -d)"
_chain
_commit -b base.qcow2 top.qcow2
_content top.qcow2
_read -c 'read -P 1 0 512k' -c 'read -P 2 512k 512k' -c 'read -P 3 1M 512k' \
    -c 'read -P 3 2M 64k' -c 'read -P 0 3M 64k' base.qcow2
_map top.qcow2
_map mid.qcow2
_map base.qcow2
_check base.qcow2
_sum top.qcow2
_sum mid.qcow2

_section "three images: -b with the immediate backing file"
_chain
_commit -b mid.qcow2 top.qcow2
_content top.qcow2
_map top.qcow2
_map mid.qcow2
_sum top.qcow2

_section "-d: the top is left as it was"
_chain
_commit -d top.qcow2
_content top.qcow2
_map top.qcow2
_map mid.qcow2
_sum top.qcow2

_section "quiet and progress"
_chain
_commit -q top.qcow2
_chain
_commit -p top.qcow2
_chain
_commit -p -q -d top.qcow2
_chain
_commit -r 1M -b base.qcow2 top.qcow2
_content top.qcow2

_section "raw base"
qemu-img create -q -f raw base.raw 4M
_io -f raw -c 'write -P 1 0 1M' -c 'write -P 0x0b 3M 64k' base.raw
qemu-img create -q -f qcow2 -b base.raw -F raw top.qcow2
_io -c 'write -P 3 1M 512k' -c 'write -z 3M 64k' -c 'write -P 3 2M 64k' top.qcow2
_commit top.qcow2
_read -f raw -c 'read -P 1 0 1M' -c 'read -P 3 1M 512k' -c 'read -P 3 2M 64k' \
    -c 'read -P 0 3M 64k' base.raw
_map -f raw base.raw
_map top.qcow2
_sum top.qcow2

_section "a base shorter than the top is grown"
qemu-img create -q -f qcow2 short.qcow2 1M
_io -c 'write -P 1 0 1M' short.qcow2
qemu-img create -q -f qcow2 -b short.qcow2 -F qcow2 long.qcow2 4M
_io -c 'write -P 5 3M 64k' long.qcow2
_commit long.qcow2
qemu-img info short.qcow2 | grep 'virtual size'
_read -c 'read -P 1 0 1M' -c 'read -P 0 1M 2M' -c 'read -P 5 3M 64k' short.qcow2
_check short.qcow2

_section "a v2 (compat=0.10) top"
qemu-img create -q -f qcow2 base.qcow2 4M
_io -c 'write -P 1 0 1M' base.qcow2
qemu-img create -q -f qcow2 -o compat=0.10 -b base.qcow2 -F qcow2 top.qcow2
_io -c 'write -P 3 512k 1M' top.qcow2
_commit top.qcow2
_read -c 'read -P 1 0 512k' -c 'read -P 3 512k 1M' base.qcow2
_map top.qcow2
_check top.qcow2

_section "errors"
_chain
qemu-img create -q -f qcow2 alone.qcow2 1M
_commit alone.qcow2
_commit -b nope.qcow2 top.qcow2
_commit -b top.qcow2 top.qcow2
_commit -r abc top.qcow2
_commit -r -1 top.qcow2
_commit -t bogus top.qcow2
_commit
_commit top.qcow2 extra
_commit nonexistent.qcow2
_commit -f raw top.qcow2
_commit -x top.qcow2
_commit --image-opts -f qcow2 top.qcow2
_map top.qcow2
qemu-img create -q -f raw plain.raw 1M
_commit plain.raw
_commit -f raw plain.raw

_section "-b relative to the image's directory"
mkdir -p sub
qemu-img create -q -f qcow2 sub/base.qcow2 4M
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 sub/mid.qcow2
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 sub/top.qcow2
_io -c 'write -P 3 0 64k' sub/top.qcow2
_commit -b sub/base.qcow2 sub/top.qcow2
_commit -b base.qcow2 sub/top.qcow2
_read -c 'read -P 3 0 64k' sub/base.qcow2
_commit -b ./mid.qcow2 sub/top.qcow2
_commit --image-opts -b base.qcow2 driver=qcow2,file.filename=sub/top.qcow2
