#!/usr/bin/env bash
# open / close / read-only handling and "no file open".
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "no file given: every command needing an image fails"
_run_io \
    -c 'read 0 1' \
    -c 'write 0 1' \
    -c 'readv 0 1' \
    -c 'writev 0 1' \
    -c 'aio_read 0 1' \
    -c 'aio_write 0 1' \
    -c 'aio_flush' \
    -c 'flush' \
    -c 'discard 0 1' \
    -c 'length' \
    -c 'info' \
    -c 'map' \
    -c 'alloc 0' \
    -c 'truncate 1' \
    -c 'close' \
    -c 'break a b' \
    -c 'resume a' \
    -c 'remove_break a' \
    -c 'wait_break a' \
    -c 'reopen -r' \
    -c 'sleep 1' \
    -c 'help length' \
    -c 'frob'

_section "no file open is checked before the argument count and options"
_run_io -c 'read' -c 'read -x 0 1' -c 'length x' -c 'read abc 1' -c 'r' -c 'l x'

_section "no commands at all (interactive mode, empty stdin)"
_run_io </dev/null
_run_io -f raw t.raw </dev/null

_section "close, then commands fail"
_run_io -f raw -c 'length' -c 'close' -c 'length' -c 'read 0 1' -c 'close' -c 'c' t.raw

_section "open"
_run_io \
    -c 'open -o driver=raw t.raw' \
    -c 'length' \
    -c 'write -P 0x42 0 512' \
    -c 'close' \
    -c 'o -o driver=raw t.raw' \
    -c 'read -P 0x42 0 512' \
    -c 'c'

_section "open when a file is open"
_run_io -f raw -c 'open -o driver=raw t.raw' -c 'length' t.raw
_run_io -c 'open -o driver=raw t.raw' -c 'open t.raw' -c 'open -r -o driver=raw nofile.raw' -c 'length'

_section "open a missing file"
_run_io -c 'open -o driver=raw nofile.raw' -c 'length'
_run_io -c 'open -r -o driver=raw nofile.raw'
_run_io -c "open -o driver=raw $TEST_DIR/nofile.raw"
_run_io -f raw nofile.raw -c 'length'
_run_io -f raw -c 'length' -c 'open -o driver=raw t.raw' -c 'length' nofile.raw

_section "open: option and argument errors"
_run_io \
    -c 'open' \
    -c 'open -f raw t.raw' \
    -c 'open -o driver=raw t.raw x.raw' \
    -c 'open -t bogus t.raw' \
    -c 'open -d bogus t.raw' \
    -c 'open -i bogus t.raw' \
    -c 'open -k -o driver=raw t.raw' \
    -c 'open -o driver=raw,foo=bar t.raw' \
    -c 'open -o foo -o driver=raw t.raw' \
    -c 'open -o driver=bogus t.raw' \
    -c 'open -o driver=raw' \
    -c 'length'

_section "open -r, then writes fail"
_run_io \
    -c 'open -r -o driver=raw t.raw' \
    -c 'write 0 1' \
    -c 'write -z 0 1' \
    -c 'writev 0 1' \
    -c 'aio_write 0 1' \
    -c 'aio_flush' \
    -c 'discard 0 1' \
    -c 'truncate 2M' \
    -c 'read -P 0x42 0 512' \
    -c 'length'

_section "-r invocation, then writes fail"
_run_io -f raw -r \
    -c 'write 0 1' \
    -c 'write -z -u 0 1' \
    -c 'writev 0 1' \
    -c 'aio_write -z 0 1' \
    -c 'discard 0 1' \
    -c 't 2M' \
    -c 'read -P 0x42 0 512' \
    t.raw
_run_io -f raw --read-only -c 'write 0 1' t.raw

_section "-U (force share) requires read-only"
_run_io -f raw -U -c 'length' t.raw
_run_io -f raw -U -r -c 'length' -c 'read -P 0x42 0 512' t.raw
_run_io -c 'open -U -o driver=raw t.raw' -c 'length'
_run_io -c 'open -rU -o driver=raw t.raw' -c 'length'

_section "snapshot mode: writes are discarded"
_run_io -f raw -s -c 'write -P 0x43 0 512' -c 'read -P 0x43 0 512' t.raw
_run_io -f raw -c 'read -P 0x42 0 512' t.raw
_run_io -c 'open -s -o driver=raw t.raw' -c 'write -P 0x44 0 512' -c 'close' -c 'open -o driver=raw t.raw' -c 'read -P 0x42 0 512'

_section "other open flags"
_run_io -c 'open -C -o driver=raw t.raw' -c 'read -P 0x42 0 512'
_run_io -c 'open -t writeback -d unmap -i threads -o driver=raw t.raw' -c 'read -P 0x42 0 512'
