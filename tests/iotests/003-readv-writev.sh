#!/usr/bin/env bash
# readv / writev: several lengths form one request; -P verification over the
# whole request; CSV/quiet; errors.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "writev and readv with several lengths"
_run_io -f raw \
    -c 'writev -P 0x11 0 512 1k 512' \
    -c 'readv -P 0x11 0 512 1k 512' \
    -c 'readv -P 0x11 0 2k' \
    -c 'readv -P 0x11 0 1 1 1 1 2044' \
    -c 'writev -P 0x22 64k 4k 4k 4k 4k' \
    -c 'readv -P 0x22 64k 16k' \
    -c 'read -P 0x22 64k 16k' \
    -c 'writev 128k 100 200 300' \
    -c 'read -P 0xcd 128k 600' \
    -c 'readv -P 0 128600 424' \
    t.raw

_section "readv -P mismatch"
_run_io -f raw -c 'readv -P 0x11 0 2k 512' t.raw
_run_io -f raw -c 'readv -P 0x22 60k 4k 4k' -c 'readv -P 0x22 64k 4k' t.raw

_section "zero-length elements and requests"
_run_io -f raw \
    -c 'readv -P 0x11 0 2k 0' \
    -c 'readv 0 0' \
    -c 'writev 0 0' \
    -c 'readv 0 0 0 0' \
    t.raw

_section "quiet, CSV, FUA"
_run_io -f raw \
    -c 'readv -q 0 512' \
    -c 'readv -C 0 512 512' \
    -c 'writev -C -P 3 4096 512 512' \
    -c 'writev -f 8192 512' \
    -c 'writev -q 8192 512' \
    -c 'writev -fq -P 4 8192 512 512' \
    -c 'readv -Cq -P 4 8192 1k' \
    -c 'readv -P 4 8192 1k' \
    t.raw

_section "errors"
_run_io -f raw \
    -c 'readv 0' \
    -c 'writev 0' \
    -c 'writev -P 300 0 1' \
    -c 'readv -P abc 0 1' \
    -c 'readv -x 0 1' \
    -c 'writev -z 0 1' \
    -c 'writev -P' \
    -c 'readv 0 abc' \
    -c 'writev 0 1 1.5' \
    -c 'readv 0 3G' \
    -c 'writev 0 1G 1G 1G' \
    -c 'readv 0 1G 1G' \
    -c 'readv 2M 512' \
    -c 'writev 1M 1' \
    -c 'writev 1048064 256 256 1' \
    t.raw
