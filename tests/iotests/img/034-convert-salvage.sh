# qemu-img convert --salvage: source read errors injected with blkdebug (as QEMU's iotest 251
# does) become zeros in the target, sector by sector, with qemu-img's warnings; without
# --salvage the copy stops with qemu-img's error. Judged with qemu-io reads and qemu-img map.
. ./convert.rc
. ./common.rc
# The warnings of several coroutines interleave in an order neither tool promises: sorted.
_conv_sorted() {
    echo "--- convert $* (output sorted)"
    stdbuf -oL $QEMU_IMG convert "$@" 2>&1 | sort -t' ' -k7n
    echo "exit status: ${PIPESTATUS[0]}"
}
_reads() {
    local img=$1; shift
    while [ $# -gt 0 ]; do
        if $QEMU_IO "${IO_OPTS[@]}" -c "read -P $1 $2 $3" "$img" | grep -q 'verification failed'; then
            echo "read -P $1 $2 $3: differs"
        else
            echo "read -P $1 $2 $3: ok"
        fi
        shift 3
    done
}
# json: filename of image $2 (format $1) whose file fails reads as $3 (inject-error rules).
_bad() {
    echo "json:{'driver':'$1','file':{'driver':'blkdebug','image.filename':'$2','inject-error':[$3]}}"
}

truncate -s 4M r.raw
_io -f raw -c 'write -P 1 0 4M' r.raw
$REF create -q -f qcow2 q.qcow2 4M
_io -c 'write -P 1 0 4M' q.qcow2
$REF create -q -f qcow2 -o cluster_size=4k p.qcow2 1M
_io -c 'write -P 2 0 64k' -c 'write -P 3 512k 64k' p.qcow2

ONE="{'event':'read_aio','errno':5,'sector':2048,'once':false}"
TWO="$ONE,{'event':'read_aio','errno':28,'sector':6000,'once':false}"
ALL="{'event':'read_aio','errno':5}"
ONCE="{'event':'read_aio','errno':5,'once':true}"

_section "without --salvage"
_conv -O raw "$(_bad raw r.raw "$ONE")" e1.raw
_conv -O qcow2 "$(_bad raw r.raw "$ONE")" e2.qcow2
_conv -O qcow2 "$(_bad qcow2 q.qcow2 "$ONE")" e3.qcow2
_conv -p -O raw "$(_bad raw r.raw "$ONE")" e4.raw
_conv -m 1 -O raw "$(_bad raw r.raw "$TWO")" e5.raw
_conv -q -O raw "$(_bad raw r.raw "$ONE")" e6.raw

_section "one bad sector"
IO_OPTS=(-f raw)
_conv --salvage -O raw "$(_bad raw r.raw "$ONE")" s1.raw
_reads s1.raw 1 0 1M 0 1M 512 1 1049088 3145216
_conv --salvage -O qcow2 "$(_bad raw r.raw "$ONE")" s2.qcow2
$REF check -q s2.qcow2 && echo "check: ok"
IO_OPTS=()
_reads s2.qcow2 1 0 1M 0 1M 512 1 1049088 3145216
_map s2.qcow2
_conv --salvage -O qcow2 "$(_bad qcow2 q.qcow2 "$ONE")" s3.qcow2
_reads s3.qcow2 1 0 720896 0 720896 512 1 721408 3473408
_map s3.qcow2

_section "two bad sectors, two errnos"
_conv --salvage -m 1 -O qcow2 "$(_bad raw r.raw "$TWO")" s4.qcow2
_reads s4.qcow2 1 0 1M 0 1M 512 1 1049088 2022912 0 3072000 512 1 3072512 1121792
_conv_sorted --salvage -O qcow2 "$(_bad raw r.raw "$TWO")" s5.qcow2
_reads s5.qcow2 1 0 1M 0 1M 512 1 1049088 2022912 0 3072000 512 1 3072512 1121792

_section "a failure that goes away on the retry"
_conv --salvage -O qcow2 "$(_bad raw r.raw "$ONCE")" s6.qcow2
$REF compare -f raw r.raw s6.qcow2

_section "every read fails"
_conv --salvage -m 1 -O qcow2 "$(_bad qcow2 p.qcow2 "$ALL")" s7.qcow2
$REF check -q s7.qcow2 && echo "check: ok"
_map s7.qcow2
_conv_sorted --salvage -O raw "$(_bad qcow2 p.qcow2 "$ALL")" s8.raw
IO_OPTS=(-f raw)
_reads s8.raw 0 0 1M

_section "progress, quiet, options"
_conv --salvage -p -O raw "$(_bad raw r.raw "$ONE")" s9.raw
_conv --salvage -q -O raw "$(_bad raw r.raw "$ONE")" s10.raw
_conv --salvage -W -O raw "$(_bad raw r.raw "$ONE")" s11.raw
_reads s11.raw 1 0 1M 0 1M 512 1 1049088 3145216
_conv --salvage -S 0 -O qcow2 "$(_bad raw r.raw "$ONE")" s12.qcow2
IO_OPTS=()
_reads s12.qcow2 1 0 1M 0 1M 512 1 1049088 3145216
_map s12.qcow2
_conv --salvage -O raw r.raw s13.raw
$REF compare -f raw -F raw r.raw s13.raw
_conv --salvage -O raw nofile.raw s14.raw

_section "interop: the same command run by qemu-img gives the same image"
_same i1.qcow2 --salvage -m 1 -O qcow2 "$(_bad raw r.raw "$TWO")"
_same i2.qcow2 --salvage -m 1 -O qcow2 -o cluster_size=512 "$(_bad qcow2 q.qcow2 "$ONE")"
