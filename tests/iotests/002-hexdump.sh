#!/usr/bin/env bash
# read -v / readv -v / aio_read -v hexdumps: aligned and unaligned offsets,
# partial last lines, the ASCII column (isalnum only), offsets above 4 GiB.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

# all.bin holds the 256 byte values 0x00 .. 0xff in order.
# shellcheck disable=SC2059  # the format is an octal escape on purpose
for i in $(seq 0 255); do printf "\\$(printf '%03o' "$i")"; done > all.bin
printf 'Hello, World! 123 abc' > hello.txt

_section "setup"
_run_io -f raw \
    -c 'write -s all.bin 0 256' \
    -c 'write -P 0x41 0x10003 5' \
    -c 'write -P 0x2e 0x10008 3' \
    -c 'write -s hello.txt 0x20003 21' \
    t.raw

_section "all byte values, 16 full lines"
_run_io -f raw -c 'read -v 0 256' t.raw

_section "unaligned offsets and partial last lines"
_run_io -f raw \
    -c 'read -v 0x10001 21' \
    -c 'read -v 65530 17' \
    -c 'read -v 0x20003 21' \
    -c 'read -v 1 1' \
    -c 'read -v 250 6' \
    -c 'read -v 0 15' \
    -c 'read -v 0 17' \
    -c 'read -v 0 32' \
    t.raw

_section "hexdump with zero length"
_run_io -f raw -c 'read -v 0 0' t.raw

_section "hexdump with -P: mismatch message, then dump, then report"
_run_io -f raw -c 'read -v -P 0x41 0x10003 5' -c 'read -v -P 1 65536 4' t.raw

_section "-q suppresses the dump, -C keeps it"
_run_io -f raw -c 'read -vq 0 3' -c 'read -vC 0 3' -c 'read -v -C -q 0 3' t.raw

_section "readv -v and aio_read -v"
_run_io -f raw -c 'readv -v 0x10001 5 11 5' -c 'readv -v 2 4 8 4' t.raw
_run_io -f raw -c 'aio_read -v 0x10000 16 16' -c 'aio_flush' t.raw

_section "offsets above 4 GiB"
_make_raw big.raw 1T
_run_io -f raw \
    -c 'write -s hello.txt 0xffffffff00 21' \
    -c 'read -v 0xfffffffef8 40' \
    -c 'read -v 1099511627760 16' \
    big.raw
