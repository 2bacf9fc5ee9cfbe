#!/usr/bin/env bash
# Requests beyond the end of the image, number parsing (qemu-compat.md §1.2),
# the request length limit and pattern bytes.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "requests beyond the end of the image"
_run_io -f raw \
    -c 'write 1048575 1' \
    -c 'read -P 0xcd 1048575 1' \
    -c 'write 1048575 2' \
    -c 'read 1048575 2' \
    -c 'read 1M 1' \
    -c 'read 2M 512' \
    -c 'write 1M 512' \
    -c 'write -z 1M 1' \
    -c 'write -z 1048575 2' \
    -c 'read 0x7fffffffffffffff 1' \
    -c 'read 7E 1' \
    t.raw

_section "zero-length requests at and beyond the end"
_run_io -f raw \
    -c 'read 1M 0' \
    -c 'write 1M 0' \
    -c 'readv 1M 0' \
    -c 'discard 1M 0' \
    -c 'read 2M 0' \
    -c 'write -z 2M 0' \
    -c 'read 0x7fffffffffffffff 0' \
    t.raw

_section "numbers that parse"
_run_io -f raw \
    -c 'write -P 0x77 0 64k' \
    -c 'read 0x10 1' \
    -c 'read 010 1' \
    -c 'read 1.5k 1' \
    -c 'read 0.5k 0.5k' \
    -c 'read 1.25k 1' \
    -c 'read 1K 1b' \
    -c 'read 1B 1' \
    -c 'read 0 0x10' \
    -c 'read -P 0x77 0 64K' \
    -c 'read 0 0.0625M' \
    -c 'read 0X10 1' \
    -c 'read 00 1' \
    t.raw

_section "numbers that do not parse"
_run_io -f raw \
    -c 'read 0 abc' \
    -c 'read abc 0' \
    -c 'read 1.5 1' \
    -c 'read 0 1kb' \
    -c 'read 0 1KiB' \
    -c 'read 0 9E' \
    -c 'read 0 16E' \
    -c 'read 8E 1' \
    -c 'read 0x8000000000000000 0' \
    -c 'read 0 0x' \
    -c 'read 0 1x' \
    -c 'read 0 k' \
    -c 'read 0 1.5.5k' \
    -c 'write 0 1kb' \
    -c 'writev 0 1 abc' \
    t.raw

_section "negative numbers are options"
_run_io -f raw -c 'read 0 -1' t.raw
_run_io -f raw -c 'write -1 1' t.raw

_section "length limit (2147483136)"
_run_io -f raw \
    -c 'read 0 99999999999999' \
    -c 'read 0 2147483137' \
    -c 'read 0 0x80000000' \
    -c 'read 0 3G' \
    -c 'write 0 3G' \
    -c 'write -z 0 3G' \
    -c 'write -P 1 0 2G' \
    -c 'discard 0 3G' \
    -c 'aio_read 0 3G' \
    -c 'readv 0 3G' \
    -c 'readv 0 1G 1G' \
    -c 'writev 0 1G 1G 1G' \
    t.raw

_section "write -z -n may exceed the length limit"
# (-u is used for the large requests so that the host file system punches
# holes instead of allocating 3 GiB.)
_run_io -f raw -c 'write -z -n 0 3G' t.raw
_make_raw big.raw 4G
_run_io -f raw -c 'write -z -u -n 0 3G' -c 'write -z -u -n -C 0 3G' -c 'write -zunq 0 3G' -c 'write -z -u -n 1G 3G' -c 'write -z -u -n 2G 3G' big.raw

_section "pattern bytes"
_run_io -f raw \
    -c 'read -P 300 0 1' \
    -c 'read -P 256 0 1' \
    -c 'read -P -1 0 1' \
    -c 'read -P 0x100 0 1' \
    -c 'read -P 1k 0 1' \
    -c 'read -P 1.5 0 1' \
    -c 'read -P abc 0 1' \
    -c 'read -P 0x 0 1' \
    -c 'read -P 08 0 1' \
    -c 'read -P 1e 0 1' \
    -c 'write -P 300 0 1' \
    -c 'aio_read -P 300 0 1' \
    t.raw

_section "pattern bytes: decimal, hex, octal, signs"
_run_io -f raw \
    -c 'write -P 255 0 1' \
    -c 'read -v 0 1' \
    -c 'write -P 0xAb 0 1' \
    -c 'read -v 0 1' \
    -c 'write -P 010 0 1' \
    -c 'read -v 0 1' \
    -c 'write -P 0377 0 1' \
    -c 'read -v 0 1' \
    -c 'write -P +5 0 1' \
    -c 'read -v 0 1' \
    -c 'write -P -0 0 1' \
    -c 'read -v 0 1' \
    -c 'read -P 0 0 1' \
    t.raw
