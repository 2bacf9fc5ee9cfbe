#!/usr/bin/env bash
# The luks format under qemu-io's commands: info (the header), patterns written and read at
# unaligned offsets, zero writes (encrypted zeros, no efficient zeroing), discard, and the
# open errors (no key-secret, a wrong password, an unknown secret).
. "$(dirname "$0")/common.rc"

qemu-img create -q -f luks --object secret,id=sec0,data=abc -o key-secret=sec0,iter-time=10 t.luks 1M
S="--object secret,id=sec0,data=abc"
O="driver=luks,key-secret=sec0,file.filename=t.luks"

_section "info"
_run_io $S --image-opts -c info "$O" |
    sed -e 's/uuid: .*/uuid: UUID/' -e 's/iters: [0-9]*/iters: N/'

_section "patterns"
_run_io $S --image-opts \
    -c 'write -P 0x5a 0 64k' -c 'write -P 0x11 1000 3000' -c 'write -P 0x22 65535 2' \
    -c 'read -P 0x5a 0 1000' -c 'read -P 0x11 1000 3000' -c 'read -P 0x5a 4000 61535' \
    -c 'read -P 0x22 65535 2' -c 'read -P 0x11 1000 3001' "$O"

_section "zeroes and discard"
_run_io $S --image-opts -c 'write -z 4k 8k' -c 'read -P 0 4k 8k' -c 'write -z -n 64k 4k' \
    -c 'discard 128k 64k' -c 'read -P 0x5a 0 4k' "$O"

_section "open errors"
_run_io -f luks -c 'read 0 512' t.luks
_run_io --object secret,id=sec0,data=abd --image-opts -c 'read 0 512' "$O"
_run_io --object secret,id=other,data=abc --image-opts -c 'read 0 512' "$O"
