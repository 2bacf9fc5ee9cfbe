#!/usr/bin/env bash
# map and alloc on raw images.  A raw node has no backing file, so qemu-io 7.2
# reports every byte as allocated, whether the file has holes (fresh sparse
# file, write -z -u, discard) or data.  Sizes and offsets are multiples of
# 64 KiB / 1 MiB anyway, so the host file system's block size cannot matter.
. "$(dirname "$0")/common.rc"

_section "fresh sparse image"
_make_raw s.raw 4M
_run_io -f raw \
    -c 'map' \
    -c 'alloc 0' \
    -c 'alloc 0 4M' \
    -c 'alloc 1M 64k' \
    s.raw

_section "after writing data"
_run_io -f raw \
    -c 'write -P 1 1M 64k' \
    -c 'write -P 2 3M 1M' \
    -c 'map' \
    -c 'alloc 0 4M' \
    -c 'alloc 1M 64k' \
    -c 'alloc 1088k 64k' \
    s.raw

_section "holes created with write -z -u and discard"
_run_io -f raw \
    -c 'write -z -u 1M 64k' \
    -c 'discard 3M 1M' \
    -c 'map' \
    -c 'alloc 1M 64k' \
    -c 'alloc 3M 1M' \
    -c 'a 0 4M' \
    s.raw

_section "alloc: count clipped at the end, at and past the end"
_run_io -f raw \
    -c 'alloc 3M 2M' \
    -c 'alloc 4M' \
    -c 'alloc 4M 1M' \
    -c 'alloc 5M' \
    -c 'alloc 4194303' \
    -c 'alloc 4194303 2' \
    -c 'alloc 0 0' \
    s.raw

_section "alloc: unaligned offsets"
_run_io -f raw \
    -c 'alloc 1' \
    -c 'alloc 1 512' \
    -c 'alloc 1000' \
    -c 'alloc 0x100001 0x1' \
    -c 'alloc 1048575 3' \
    s.raw

_section "alloc: argument errors"
_run_io -f raw \
    -c 'alloc' \
    -c 'alloc abc' \
    -c 'alloc 0 abc' \
    -c 'alloc 0 1 2' \
    -c 'alloc -x 0' \
    -c 'alloc 8E' \
    -c 'alloc 1.5' \
    s.raw

_section "map: argument errors"
_run_io -f raw -c 'map x' -c 'map -x' s.raw

_section "human-readable sizes in map and alloc"
_make_raw a.raw 1536
_run_io -f raw -c 'map' -c 'alloc 0 2k' -c 'alloc 1535 1' -c 'alloc 1536 0' -c 'alloc 1024 512' a.raw
_make_raw b.raw 1179648
_run_io -f raw -c 'map' -c 'alloc 1M 1M' -c 'alloc 1048064 1024' b.raw
_make_raw c.raw 1T
_run_io -f raw \
    -c 'map' \
    -c 'alloc 0 4G' \
    -c 'alloc 1023G 4G' \
    -c 'alloc 1T 1T' \
    -c 'alloc 0 3G' \
    -c 'write -P 1 1023G 64k' \
    -c 'map' \
    -c 'alloc 1023G 64k' \
    c.raw

_section "empty image"
_make_raw e.raw 0
_run_io -f raw -c 'map' -c 'alloc 0' -c 'alloc 0 1M' -c 'truncate 64k' -c 'map' -c 'alloc 0 1M' e.raw
