#!/usr/bin/env bash
# Format probing: without -f a raw image is probed, a warning is printed and
# writes to the first sector that would change the probed format are refused.
# (This is the only test that does not pass -f raw.)
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M
printf 'QFI\373' > qfi.bin

_section "probing prints a warning on stderr"
_run_io -c 'length' -c 'info' t.raw
_run_io -c 'length' "$TEST_DIR/t.raw"

_section "writes that would make the image probe as qcow2 are refused"
_run_io \
    -c 'write -s qfi.bin 0 512' \
    -c 'write -s qfi.bin 0 4' \
    -c 'write -s qfi.bin 512 512' \
    -c 'write -P 0x51 0 512' \
    -c 'read -v 0 8' \
    -c 'write -s qfi.bin 1 4' \
    -c 'read -v 0 8' \
    -c 'writev -P 0x51 0 512' \
    t.raw

_section "with -f raw the same write is allowed"
_run_io -f raw -c 'write -s qfi.bin 0 4' -c 'read -v 0 4' -c 'write -z 0 4' -c 'read -v 0 4' t.raw

_section "open without a driver option probes too"
_run_io -c 'open t.raw' -c 'length' -c 'close' -c 'open -o driver=raw t.raw' -c 'length'

_section "probing an empty file"
_make_raw empty.raw 0
_run_io -c 'length' empty.raw
