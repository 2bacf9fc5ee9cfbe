#!/usr/bin/env bash
# write -z / -u / -n / -f / -c / -b / -s, their conflicts, and discard.
. "$(dirname "$0")/common.rc"

_make_raw t.raw 4M
printf 'Hello, World! 123 abc' > src.txt

_section "setup"
_run_io -f raw -c 'write -P 9 0 1M' t.raw

_section "write -z, aligned and unaligned"
_run_io -f raw \
    -c 'write -z 0 64k' \
    -c 'read -P 0 0 64k' \
    -c 'read -P 9 64k 64k' \
    -c 'write -z 70000 100' \
    -c 'read -P 9 69900 100' \
    -c 'read -P 0 70000 100' \
    -c 'read -P 9 70100 100' \
    -c 'read -v 69998 4' \
    t.raw

_section "write -z -u (may unmap)"
_run_io -f raw \
    -c 'write -z -u 64k 64k' \
    -c 'read -P 0 64k 64k' \
    -c 'read -P 9 128k 64k' \
    -c 'write -zu 200k 1' \
    -c 'read -v 204799 3' \
    t.raw

_section "write -z -n (no fallback), aligned and unaligned"
_run_io -f raw \
    -c 'write -z -n 128k 64k' \
    -c 'read -P 0 128k 64k' \
    -c 'write -z -n 300000 7' \
    -c 'read -v 299998 11' \
    -c 'write -z -u -n 1M 1M' \
    -c 'read -P 0 1M 1M' \
    t.raw

_section "-u / -n without -z"
_run_io -f raw -c 'write -u 0 1' t.raw
_run_io -f raw -c 'write -n 0 1' t.raw
_run_io -f raw -c 'write -n 0 3G' t.raw

_section "write -f (FUA)"
_run_io -f raw -c 'write -f -P 0x66 256k 4k' -c 'read -P 0x66 256k 4k' -c 'write -z -f 256k 512' -c 'read -P 0 256k 512' t.raw

_section "conflicting options"
_run_io -f raw -c 'write -z -P 1 0 1' t.raw
_run_io -f raw -c 'write -P 1 -s src.txt 0 1' t.raw
_run_io -f raw -c 'write -z -s src.txt 0 1' t.raw
_run_io -f raw -c 'write -f -c 0 512' t.raw
_run_io -f raw -c 'write -c -f 0 512' t.raw
_run_io -f raw -c 'write -f -b 0 512' t.raw
_run_io -f raw -c 'write -b -z 0 512' t.raw
_run_io -f raw -c 'write -z -b 0 512' t.raw
_run_io -f raw -c 'write -c -u 0 512' t.raw

_section "compressed and VM state writes on raw"
_run_io -f raw \
    -c 'write -c 0 512' \
    -c 'write -c 100 512' \
    -c 'write -c 0 100' \
    -c 'write -b 0 512' \
    -c 'write -b 100 512' \
    -c 'write -bc 0 512' \
    -c 'read -b 0 512' \
    -c 'read -b 1 512' \
    -c 'read -b 0 100' \
    t.raw

_section "write -c -z: the zero write wins, after the alignment check"
_run_io -f raw \
    -c 'write -P 5 0 1k' \
    -c 'write -c -z 0 512' \
    -c 'read -P 0 0 512' \
    -c 'read -P 5 512 512' \
    -c 'write -z -c 100 512' \
    -c 'write -zc 512 100' \
    -c 'write -c -z -u 0 512' \
    t.raw

_section "write -s: data from a file, repeated when shorter than the length"
_run_io -f raw \
    -c 'write -s src.txt 0x10003 21' \
    -c 'read -v 0x10003 21' \
    -c 'write -s src.txt 0x20000 50' \
    -c 'read -v 0x20000 50' \
    -c 'write -s src.txt 0x30000 5' \
    -c 'read -v 0x30000 8' \
    -c 'write -C -s src.txt 0x40000 100' \
    -c 'write -q -s src.txt 0x40000 100' \
    t.raw

_section "write -s errors"
_run_io -f raw -c 'write -s nofile 0 1' t.raw
_run_io -f raw -c "write -s $TEST_DIR/nofile 0 1" t.raw
_run_io -f raw -c 'write -s /dev/null 0 1' t.raw
_run_io -f raw -c 'write -s src.txt 0 0' t.raw
_run_io -f raw -c 'write -s . 0 1' t.raw
_run_io -f raw -c 'write -s' t.raw

_section "discard"
_run_io -f raw \
    -c 'write -P 9 0 1M' \
    -c 'discard 64k 64k' \
    -c 'read -P 0 64k 64k' \
    -c 'read -P 9 0 64k' \
    -c 'read -P 9 128k 64k' \
    -c 'discard -q 256k 64k' \
    -c 'discard -C 512k 64k' \
    -c 'discard 1000 100' \
    -c 'discard 0 0' \
    -c 'd 1M 3M' \
    t.raw

_section "discard with -d ignore keeps the data"
_run_io -f raw -d ignore -c 'write -P 8 0 64k' -c 'discard 0 64k' -c 'read -P 8 0 64k' t.raw
_run_io -f raw -d off -c 'discard 0 64k' -c 'read -P 8 0 64k' t.raw

_section "discard with -d unmap"
_run_io -f raw -d unmap -c 'discard 0 64k' -c 'read -P 0 0 64k' t.raw

_section "discard errors"
_run_io -f raw \
    -c 'discard -x 0 1' \
    -c 'discard 0' \
    -c 'discard 0 1 2' \
    -c 'discard 4M 1' \
    -c 'discard 3M 2M' \
    -c 'discard -f 0 1' \
    -c 'discard 0 3G' \
    -c 'discard abc 1' \
    t.raw
