#!/usr/bin/env bash
# read and write on a raw image: patterns, pattern mismatch, verification
# ranges (-s/-l), quiet and CSV reports, zero-length requests.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 1M

_section "write and read back with patterns"
_run_io -f raw \
    -c 'write -P 0x5a 0 64k' \
    -c 'read -P 0x5a 0 64k' \
    -c 'read -P 90 0 64k' \
    -c 'write -P 0 64k 64k' \
    -c 'read -P 0 64k 64k' \
    -c 'write 128k 512' \
    -c 'read -P 0xcd 128k 512' \
    -c 'write -P5 192k 4k' \
    -c 'read -P5 192k 4k' \
    t.raw

_section "data persists across invocations"
_run_io -f raw -c 'read -P 0x5a 0 64k' -c 'read -P 0 64k 64k' -c 'read -P 0 256k 768k' t.raw

_section "pattern mismatch (command fails, report still printed)"
_run_io -f raw -c 'read -P 0x5b 0 64k' t.raw
_run_io -f raw -c 'read -P 0x5a 32k 64k' -c 'read -P 0x5a 0 512' t.raw

_section "verification ranges -s / -l"
_run_io -f raw \
    -c 'read -P 0x5a -s 512 -l 1024 0 4096' \
    -c 'read -P 0 -s 512 -l 1024 65024 4096' \
    -c 'read -P 0x5a -s 512 -l 1024 65024 4096' \
    -c 'read -P 0x5a -s 0 -l 1024 65000 1024' \
    -c 'read -P 0x5a -l 100 0 4096' \
    -c 'read -P 0x5a -s 4000 0 4096' \
    -c 'read -P 0 -s 4000 60k 4096' \
    -c 'read -P 0x5a -s 0 -l 536 65000 1024' \
    t.raw

_section "verification range exceeding the read data"
_run_io -f raw -c 'read -P 0 -s 4000 -l 200 60k 4096' t.raw
_run_io -f raw -c 'read -P 0x5a -s 4097 0 4096' t.raw
_run_io -f raw -c 'read -P 0x5a -l 4097 0 4096' t.raw
_run_io -f raw -c 'read -P 0x5a -s 4096 -l 0 0 4096' t.raw

_section "-s / -l without -P"
_run_io -f raw -c 'read -s 1 0 10' t.raw
_run_io -f raw -c 'read -l 1 0 10' t.raw

_section "quiet and CSV reports"
_run_io -f raw \
    -c 'read -q 0 512' \
    -c 'read -q -P 0x5a 0 512' \
    -c 'write -q -P 0x5a 0 512' \
    -c 'read -C 0 512' \
    -c 'write -C -P 0x5a 512 512' \
    -c 'read -C -P 0x5a 0 1k' \
    -c 'read -qC 0 1' \
    -c 'read -Cq 0 1' \
    -c 'write -qC -P 0x5a 0 1' \
    t.raw
_run_io -f raw -c 'read -q -P 1 0 512' t.raw
_run_io -f raw -c 'read -C -P 1 0 512' t.raw

_section "zero-length requests"
_run_io -f raw \
    -c 'read 0 0' \
    -c 'read -P 1 0 0' \
    -c 'write 0 0' \
    -c 'write -P 1 1M 0' \
    -c 'read 1M 0' \
    -c 'read -C 0 0' \
    t.raw

_section "-p is accepted and ignored"
_run_io -f raw -c 'read -p -P 0x5a 0 512' -c 'write -p -P 0x5a 0 512' t.raw

_section "final contents"
_run_io -f raw -c 'read -P 0x5a 0 64k' -c 'read -P 0 64k 64k' -c 'read -P 0xcd 128k 512' -c 'read -P 5 192k 4k' t.raw
