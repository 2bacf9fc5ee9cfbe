# snapshot: listing (empty, one, many, long names), create/apply/delete with the data read
# back after each apply (qemu-io, and the tool under test's own io when it is qblock), check
# after every change, errors and their exit status, -q, -U, --image-opts, compressed
# clusters, a backing file, and a snapshot taken before a resize. Dates are filtered.
. ./common.rc
_filter_dates() {
    sed -e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/DATE/'
}
# Reads through qemu-io, and through qblock io when the tool under test is qblock (qemu-io's
# output byte for byte), so the same .out serves both.
_read() {
    qemu-io -c "$1" "$2" | grep -v 'ops/sec'
    if [ "$QEMU_IMG" = qemu-img ]; then
        qemu-io -c "$1" "$2"
    else
        $QEMU_IMG io -c "$1" "$2"
    fi | grep -v 'ops/sec' | sed 's/^/  (tool io) /'
}
_snap() { _img snapshot "$@" | _filter_dates; }

_section empty list
qemu-img create -q -f qcow2 a.qcow2 64M
_snap -l a.qcow2
_snap a.qcow2
qemu-img create -q -f raw r.raw 1M
_snap -l r.raw

_section one snapshot
qemu-io -c "write -P 1 0 128k" -c "write -P 1 1M 64k" a.qcow2 >/dev/null
_snap -c s1 a.qcow2
_snap -l a.qcow2
_img check a.qcow2
_img info a.qcow2 | _filter_dates

_section many, duplicate names, numeric names, long names
_snap -c s1 a.qcow2
qemu-io -c "write -P 8 0 64k" a.qcow2 >/dev/null
_snap -c 1 a.qcow2
_snap -c averyveryverylongsnapshotnamethatgoespastitscolumn a.qcow2
_snap -q -c "with spaces" a.qcow2
_snap -c "" a.qcow2
_snap -l a.qcow2
_img check a.qcow2

_section data after apply
qemu-img create -q -f qcow2 d.qcow2 64M
qemu-io -c "write -P 1 0 256k" -c "write -P 1 10M 64k" d.qcow2 >/dev/null
_snap -c p1 d.qcow2
qemu-io -c "write -P 2 0 128k" -c "write -P 2 20M 64k" -c "discard 10M 64k" d.qcow2 >/dev/null
_snap -c p2 d.qcow2
qemu-io -c "write -P 3 64k 256k" -c "write -z 20M 64k" d.qcow2 >/dev/null
_img check d.qcow2
_snap -a p1 d.qcow2
_img check d.qcow2
_read "read -P 1 0 256k" d.qcow2
_read "read -P 1 10M 64k" d.qcow2
_read "read -P 0 20M 64k" d.qcow2
_snap -a 2 d.qcow2
_img check d.qcow2
_read "read -P 2 0 128k" d.qcow2
_read "read -P 1 128k 128k" d.qcow2
_read "read -P 0 10M 64k" d.qcow2
_read "read -P 2 20M 64k" d.qcow2
qemu-io -c "write -P 4 0 64k" d.qcow2 >/dev/null
_snap -d p1 d.qcow2
_img check d.qcow2
_snap -a p2 d.qcow2
_read "read -P 2 0 128k" d.qcow2
_snap -d p2 d.qcow2
_snap -l d.qcow2
_img check d.qcow2
_read "read -P 2 0 128k" d.qcow2
_img info d.qcow2

_section which snapshot an argument names
# snapshot 1 is "s1" (pattern 1 at 0); snapshot 3 is named "1" (pattern 8): -a 1 applies
# id 1, -d 1 deletes the one named "1"
qemu-io -c "write -P 9 0 64k" a.qcow2 >/dev/null
_snap -a 1 a.qcow2
_read "read -P 1 0 64k" a.qcow2
_snap -a 3 a.qcow2
_read "read -P 8 0 64k" a.qcow2
_snap -d 1 a.qcow2
_snap -l a.qcow2
_snap -d s1 a.qcow2
_snap -l a.qcow2
_img check a.qcow2

_section errors
_snap -a nope a.qcow2
_snap -d nope a.qcow2
_snap -q -d nope a.qcow2
_snap -c x r.raw
_snap -a x r.raw
_snap -d x r.raw
_snap r.raw
_snap -l -c x a.qcow2
_snap -c x -c y a.qcow2
_snap -l a.qcow2 a.qcow2
_snap a.qcow2 -l -a
_snap -l
_snap -x a.qcow2
_snap -l nofile.qcow2
_snap -c x nofile.qcow2
_snap -U -c x a.qcow2
qemu-img create -q -f qcow2 -o refcount_bits=1 one.qcow2 64M
_snap -c x one.qcow2
qemu-io -c "write -P 1 0 64k" one.qcow2 >/dev/null
_snap -c y one.qcow2
_snap -l one.qcow2
_img check one.qcow2

_section -U and --image-opts
_snap -U -l a.qcow2
_snap --image-opts -l driver=qcow2,file.filename=a.qcow2
_snap --image-opts -c io driver=qcow2,file.filename=a.qcow2
_snap --image-opts -d io driver=qcow2,file.filename=a.qcow2
_snap -l a.qcow2

_section compressed clusters
qemu-img create -q -f qcow2 c.qcow2 16M
qemu-io -c "write -c -P 5 0 64k" -c "write -c -P 6 64k 64k" -c "write -P 7 1M 64k" c.qcow2 >/dev/null
_snap -c c1 c.qcow2
_img check c.qcow2
qemu-io -c "write -P 8 0 128k" -c "write -c -P 8 1M 64k" c.qcow2 >/dev/null
_snap -c c2 c.qcow2
_snap -a c1 c.qcow2
_img check c.qcow2
_read "read -P 5 0 64k" c.qcow2
_read "read -P 6 64k 64k" c.qcow2
_read "read -P 7 1M 64k" c.qcow2
_snap -d c1 c.qcow2
_snap -d c2 c.qcow2
_img check c.qcow2

_section backing file
qemu-img create -q -f qcow2 base.qcow2 16M
qemu-io -c "write -P 10 0 1M" base.qcow2 >/dev/null
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2
qemu-io -c "write -P 11 64k 4k" top.qcow2 >/dev/null
_snap -c b1 top.qcow2
qemu-io -c "write -P 12 0 256k" top.qcow2 >/dev/null
_snap -a b1 top.qcow2
_img check top.qcow2
_read "read -P 10 0 64k" top.qcow2
_read "read -P 11 64k 4k" top.qcow2
_read "read -P 10 68k 188k" top.qcow2
_img info top.qcow2 | _filter_dates

_section a snapshot taken before a resize
qemu-img create -q -f qcow2 g.qcow2 64M
qemu-io -c "write -P 13 0 64k" g.qcow2 >/dev/null
_snap -c small g.qcow2
qemu-img resize -q g.qcow2 1G
qemu-io -c "write -P 14 900M 64k" g.qcow2 >/dev/null
_snap -c big g.qcow2
_snap -a small g.qcow2
_img info g.qcow2 | _filter_dates
_img check g.qcow2
_read "read -P 13 0 64k" g.qcow2
_snap -a big g.qcow2
_img info g.qcow2 | _filter_dates
_img check g.qcow2
_read "read -P 14 900M 64k" g.qcow2
