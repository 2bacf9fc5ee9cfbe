# Images with internal snapshots (taken by qemu-img): info (the snapshot list, human and JSON),
# check (snapshot L1 trees and the table are counted) and map of the active state, before and
# after writes that COW shared clusters. Dates differ per run and are filtered.
. ./common.rc
_filter_dates() {
    sed -e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/DATE/' \
        -e 's/"date-sec": [0-9]*/"date-sec": SEC/' -e 's/"date-nsec": [0-9]*/"date-nsec": NSEC/'
}
qemu-img create -q -f qcow2 s.qcow2 64M
qemu-io -c "write -P 1 0 1M" -c "write -P 2 4M 128k" -c "write -z 8M 64k" s.qcow2 >/dev/null
qemu-img snapshot -c first s.qcow2
qemu-io -c "write -P 3 64k 64k" -c "discard 4M 64k" s.qcow2 >/dev/null
qemu-img snapshot -c "a much longer snapshot name here" s.qcow2
_section info
_img info s.qcow2 | _filter_dates
_img info --output=json s.qcow2 | _filter_dates
_section check and map
_img check s.qcow2
_img check --output=json s.qcow2
_img map --output=json s.qcow2
_section after qemu-io writes over shared clusters
qemu-io -c "write -P 4 0 4k" -c "write -P 5 4M 64k" -c "write -z -u 128k 64k" s.qcow2 >/dev/null
_img check s.qcow2
_img map s.qcow2
_section leak in a snapshot-only cluster
cp s.qcow2 leak.qcow2
# cluster 5 (guest 0 in snapshot 'first') has refcount 2; make it 3
printf '\x00\x03' | dd of=leak.qcow2 bs=1 seek=$((0x2000a)) conv=notrunc status=none
_img check leak.qcow2
_img check -r leaks leak.qcow2
