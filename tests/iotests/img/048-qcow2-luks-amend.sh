# amend's LUKS key slot options on a LUKS-encrypted qcow2 image: a slot added for a new
# passphrase (the first free one or encrypt.keyslot), slots erased by index or by the
# passphrase they hold, every refusal (the last active slot only with --force), and the
# image opened through the new passphrases by qemu-io. Iteration counts are calibrated:
# filtered.
. ./common.rc
O="--object secret,id=sec0,data=123456 --object secret,id=sec1,data=abc --object secret,id=sec2,data=xyz"
I="driver=qcow2,file.filename=k.qcow2,encrypt.key-secret=sec0"
qemu-img create -q -f qcow2 $O -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10 k.qcow2 1M
qemu-io $O --image-opts -c 'write -P 7 0 64k' "$I" >/dev/null
_slots() { _img info k.qcow2 | sed -n '/slots:/,/payload offset/p' | grep -v -e 'key offset' -e stripes |
    sed 's/iters: [0-9]*/iters: N/'; }
_read() { qemu-io $O --image-opts -c 'read -P 7 0 64k' "driver=qcow2,file.filename=k.qcow2,encrypt.key-secret=$1" 2>&1 | head -1; }

_section "add slots"
_img amend $O --image-opts "$I" -o encrypt.state=active,encrypt.new-secret=sec1,encrypt.iter-time=10
_img amend $O --image-opts "$I" -o encrypt.state=active,encrypt.new-secret=sec2,encrypt.keyslot=6,encrypt.iter-time=10
_slots
_read sec1
_read sec2
_img check $O --image-opts "$I"

_section "refusals"
_img amend $O --image-opts "$I" -o encrypt.state=inactive
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.keyslot=5
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.keyslot=9
_img amend $O --image-opts "$I" -o encrypt.state=active,encrypt.new-secret=sec1,encrypt.keyslot=1
_img amend $O --image-opts "$I" -o encrypt.state=foo
_img amend $O --image-opts "$I" -o encrypt.new-secret=sec1
_img amend $O --image-opts "$I" -o encrypt.state=active
_img amend $O --image-opts "$I" -o encrypt.state=active,encrypt.new-secret=sec1,encrypt.old-secret=sec0
_img amend $O --image-opts "$I" -o encrypt.state=active,encrypt.new-secret=nosuch
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.old-secret=nosuch

_section "erase"
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.old-secret=sec1
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.old-secret=sec1
_read sec1
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.keyslot=6
_read sec2
_slots
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.keyslot=0
_img amend $O --image-opts "$I" -o encrypt.state=inactive,encrypt.old-secret=sec0
_read sec0
_img amend $O --force --image-opts "$I" -o encrypt.state=inactive,encrypt.keyslot=0
_slots
_read sec0
