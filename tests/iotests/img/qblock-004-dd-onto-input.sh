# dd onto its own input: the output's write lock is taken before anything is truncated, so the
# input stays as it was (qemu-img 7.2 destroys it: `dd -O qcow2 if=a.raw of=a.raw` exits 0 and
# leaves a qcow2 image where the raw data was).
. ./common.rc
truncate -s 64k a.raw
qemu-io -f raw -c 'write -P 3 0 64k' a.raw >/dev/null
_sum a.raw
_img dd -f raw -O qcow2 bs=4k count=1 if=a.raw of=a.raw
_img dd -f raw bs=4k if=a.raw of=a.raw
_sum a.raw
