#!/usr/bin/env bash
# sleep, reopen, and the breakpoint commands without a blkdebug node.
# (Not wait_break: qemu-io 7.2 loops forever without a blkdebug node.  Not
# sigraise or abort.)
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "sleep"
_run_io -f raw -c 'sleep 1' -c 'sleep 0' -c 'sleep 0x1' -c 'sleep 010' -c 'length' t.raw
_run_io -c 'sleep 1'

_section "sleep with bad numbers"
_run_io -f raw \
    -c 'sleep abc' \
    -c 'sleep 1k' \
    -c 'sleep -1' \
    -c 'sleep 1.5' \
    -c 'sleep 1x' \
    -c 'sleep' \
    -c 'sleep 1 2' \
    t.raw
_run_io -c 'sleep abc'

_section "breakpoints without a blkdebug node"
_run_io -f raw \
    -c 'break write_aio a' \
    -c 'break bogus_event a' \
    -c 'resume a' \
    -c 'remove_break a' \
    -c 'remove_break 0' \
    -c 'write -P 1 0 512' \
    -c 'read -P 1 0 512' \
    t.raw
_run_io -f raw -c 'break write_aio a' t.raw
_run_io -f raw -c 'resume a' t.raw
_run_io -f raw -c 'remove_break a' t.raw

_section "breakpoint commands: argument counts"
_run_io -f raw \
    -c 'break' \
    -c 'break a' \
    -c 'break a b c' \
    -c 'resume' \
    -c 'resume a b' \
    -c 'remove_break' \
    -c 'remove_break a b' \
    -c 'wait_break' \
    -c 'wait_break a b' \
    t.raw

_section "reopen"
_run_io -f raw \
    -c 'reopen -r' \
    -c 'write 0 1' \
    -c 'read -P 1 0 512' \
    -c 'reopen -w' \
    -c 'write -P 2 0 512' \
    -c 'reopen' \
    -c 'read -P 2 0 512' \
    -c 'reopen -c writeback' \
    -c 'reopen -o discard=unmap' \
    -c 'length' \
    t.raw
_run_io -f raw -r -c 'write 0 1' -c 'reopen -w' -c 'write -P 3 0 512' -c 'read -P 3 0 512' t.raw

_section "reopen errors"
_run_io -f raw \
    -c 'reopen -r -w' \
    -c 'reopen -w -r' \
    -c 'reopen -c bogus' \
    -c 'reopen -o foo=bar' \
    -c 'reopen -o driver=qcow2' \
    -c 'reopen x' \
    -c 'reopen -x' \
    -c 'reopen -c' \
    -c 'length' \
    t.raw
