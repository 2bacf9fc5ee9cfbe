#!/usr/bin/env bash
# aio_read / aio_write / aio_flush.  Only one request is ever outstanding
# (each aio command is followed by aio_flush), so that the order of the
# completion reports is deterministic.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "aio_write, aio_read, aio_flush"
_run_io -f raw \
    -c 'aio_write -P 0x22 0 4k' \
    -c 'aio_flush' \
    -c 'aio_read -P 0x22 0 4k' \
    -c 'aio_flush' \
    -c 'aio_write -P 0x33 4k 1k 1k' \
    -c 'aio_flush' \
    -c 'aio_read -P 0x33 4k 512 512 512 512' \
    -c 'aio_flush' \
    -c 'read -P 0x33 4k 2k' \
    -c 'aio_write 64k 64k' \
    -c 'aio_flush' \
    -c 'read -P 0xcd 64k 64k' \
    t.raw

_section "completion reports are printed at exit without aio_flush"
_run_io -f raw -c 'aio_read -P 0x22 0 4k' t.raw

_section "aio_read -P mismatch: reported, but the exit status stays 0"
_run_io -f raw -c 'aio_read -P 0x23 0 4k' -c 'aio_flush' t.raw
_run_io -f raw -c 'aio_read -P 0x22 0 4k 4k' -c 'aio_flush' t.raw

_section "aio_write -z (7.2 reports a bogus time; the filter hides it)"
_run_io -f raw \
    -c 'aio_write -z 0 4k' \
    -c 'aio_flush' \
    -c 'read -P 0 0 4k' \
    -c 'aio_write -z -u 4k 1k' \
    -c 'aio_flush' \
    -c 'read -P 0 4k 1k' \
    -c 'aio_write -z -C 8k 512' \
    -c 'aio_flush' \
    -c 'aio_write -zq 8k 512' \
    -c 'aio_flush' \
    t.raw

_section "aio_write -z with several lengths"
_run_io -f raw -c 'aio_write -z 0 4k 4k' t.raw

_section "aio_write -z -P: no conflict check in aio_write, zeroes are written"
_run_io -f raw -c 'write -P 7 0 4k' -c 'aio_write -z -P 1 0 4k' -c 'aio_flush' -c 'read -P 0 0 4k' t.raw

_section "aio_write -u without -z"
_run_io -f raw -c 'aio_write -u 0 4k' t.raw

_section "aio_write -f (FUA)"
_run_io -f raw -c 'aio_write -f -P 0x44 16k 4k' -c 'aio_flush' -c 'read -P 0x44 16k 4k' t.raw

_section "-i: invalid requests for the accounting statistics"
_run_io -f raw -c 'aio_write -i 0 512' -c 'aio_read -i 0 512' -c 'aio_flush' t.raw
_run_io -f raw -c 'aio_write -i -P 1 0 512' -c 'aio_flush' -c 'read -P 0 0 512' t.raw

_section "quiet and CSV"
_run_io -f raw \
    -c 'aio_read -C 0 512' \
    -c 'aio_flush' \
    -c 'aio_read -q 0 512' \
    -c 'aio_flush' \
    -c 'aio_write -C -q 0 512' \
    -c 'aio_flush' \
    -c 'aio_write -C -P 0 0 512 512' \
    -c 'aio_flush' \
    t.raw

_section "I/O errors: printed at completion, exit status stays 0"
_run_io -f raw -c 'aio_read 2M 512' -c 'aio_flush' t.raw
_run_io -f raw -c 'aio_write 1M 512' -c 'aio_flush' t.raw
_run_io -f raw -c 'aio_write -z 1M 512' -c 'aio_flush' t.raw

_section "submission errors fail the command"
_run_io -f raw \
    -c 'aio_write -x 0 1' \
    -c 'aio_read -z 0 1' \
    -c 'aio_write -P 300 0 1' \
    -c 'aio_read 0 abc' \
    -c 'aio_read 0 3G' \
    -c 'aio_write 0 1G 1G 1G' \
    -c 'aio_write -n -z 0 1' \
    -c 'aio_write -b 0 1' \
    -c 'aio_write -c 0 512' \
    -c 'aio_read 0' \
    -c 'aio_flush x' \
    t.raw
