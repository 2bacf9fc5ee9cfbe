# Names in info --output=json as qemu-img 7.2 writes them: every character outside ASCII as
# \uXXXX (upper-case hex, surrogate pairs), bytes that are not UTF-8 as \uFFFD (a mutated image
# whose snapshot name is "s\xff"), and a name that looks like an empty array kept on its line.
# Dates differ per run and are filtered.
images=$(cd "$(dirname "$0")/../../mutations/images" && pwd)
. ./common.rc
_filter_dates() {
    sed -e 's/[0-9]\{4\}-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]/DATE/' \
        -e 's/"date-sec": [0-9]*/"date-sec": SEC/' -e 's/"date-nsec": [0-9]*/"date-nsec": NSEC/'
}
qemu-img create -q -f qcow2 n.qcow2 1M
qemu-img snapshot -c 'é€😀x' n.qcow2
qemu-img snapshot -c 'list []' n.qcow2
qemu-img snapshot -c '[]' n.qcow2
_img info --output=json n.qcow2 | _filter_dates
_img check --output=json n.qcow2
cp "$images/f01_info_json_snapname_utf8.qcow2" bad.qcow2
_img info --output=json bad.qcow2 | _filter_dates
