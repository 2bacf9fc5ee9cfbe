# Backing chains that come back to an image they have passed: every command that opens the
# chain read-only (where qemu-img 7.2 never returns) fails at once with the loop named, exit 1.
. ./common.rc
$QEMU_IMG create -q -f qcow2 self.qcow2 1M
qemu-img rebase -u -b self.qcow2 -F qcow2 self.qcow2
$QEMU_IMG create -q -f qcow2 a.qcow2 1M
$QEMU_IMG create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2
qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2
_t() { _img "$@" | head -n 5; }
for img in self.qcow2 a.qcow2; do
    _section "$img"
    _t map "$img"
    _t map -U --output=json "$img"
    _t check "$img"
    _t check -U "$img"
    _t convert -O raw "$img" out.raw
    ls out.raw 2>&1 | sed 's/^ls: //'
    _t compare "$img" "$img"
    _t measure -O qcow2 "$img"
    _t io -U -r -c 'read 0 4k' "$img"
    _t io -c 'read 0 4k' "$img"
done
