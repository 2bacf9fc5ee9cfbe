#!/usr/bin/env bash
# Generates the qcow2 bad-input corpus into DIR (default: the current directory).
# Every image starts as the same fresh image made by qemu-img/qemu-io and then has a few bytes
# poked with printf/dd. Layout of the base image (v3, 64 KiB clusters, 16 MiB, 16-bit refcounts):
#   0x00000 header (+ feature name table extension at 112, end marker at 504)
#   0x10000 refcount table (1 cluster)      0x20000 refcount block
#   0x30000 L1 table (l1_size 1)            0x40000 L2 table
#   0x50000 data of guest 0 (pattern 5)     0x60000 compressed data of guest 1M (pattern 6)
#   0x70000 data of guest 2M (pattern 7)    file length 0x80000
# Each image is DIR/<name>.qcow2; the list of names is written to DIR/cases.
# Field offsets and limits are in ../shared/docs/qcow2-format.md §2-§5, §18.
set -euo pipefail
dir=${1:-.}
mkdir -p "$dir"
cd "$dir"
: > cases

qemu-img create -q -f qcow2 -o cluster_size=64k base.img 16M
qemu-io -c 'write -P 5 0 64k' -c 'write -c -P 6 1M 64k' -c 'write -P 7 2M 64k' base.img >/dev/null

# poke FILE OFFSET WIDTH VALUE: write VALUE as a WIDTH-byte big-endian integer at OFFSET.
poke() {
  local s="" i
  for ((i = $3 - 1; i >= 0; i--)); do
    s+=$(printf '\\x%02x' $((($4 >> (8 * i)) & 0xff)))
  done
  printf '%b' "$s" | dd of="$1" bs=1 seek=$(($2)) conv=notrunc status=none
}

# mk NAME [OFFSET WIDTH VALUE]...: a copy of the base image with the given fields poked.
mk() {
  local name=$1 f=$1.qcow2
  shift
  cp base.img "$f"
  while (($# >= 3)); do
    poke "$f" "$1" "$2" "$3"
    shift 3
  done
  echo "$name" >> cases
}

# truncated NAME LENGTH: the base image cut to LENGTH bytes.
truncated() {
  cp base.img "$1.qcow2"
  truncate -s "$2" "$1.qcow2"
  echo "$1" >> cases
}

L2=0x40000 # L2 entries: guest 0 -> index 0, guest 1M -> 16, guest 2M -> 32
RT=0x10000
RB=0x20000
L1=0x30000

# --- whole file and header ---------------------------------------------------------------------
: > empty.qcow2 && echo empty >> cases
for n in 1 4 16 40 71 72 100 104 111 112 504 65536 131072; do truncated "truncated-$n" "$n"; done
mk bad-magic 0 4 0x514649fa
mk version-0 4 4 0
mk version-1 4 4 1
mk version-4 4 4 4
mk version-huge 4 4 0xffffffff
for b in 0 8 22 63; do mk "cluster-bits-$b" 20 4 "$b"; done
mk cluster-bits-huge 20 4 0xffffffff
mk header-length-0 100 4 0
mk header-length-72 100 4 72
mk header-length-100 100 4 100
mk header-length-105 100 4 105
mk header-length-cluster 100 4 0x10000
mk header-length-past-cluster 100 4 0x10008
mk header-length-huge 100 4 0xfffffff8
mk v2-with-v3-fields 4 4 2 72 8 0x20
# --- virtual size and L1 table -----------------------------------------------------------------
mk size-huge 24 8 0xffffffffffffffff
mk size-2e62 24 8 0x4000000000000000
mk size-unaligned 24 8 0x1000001
mk size-0 24 8 0
mk l1-size-huge 36 4 0xffffffff
mk l1-size-2e28 36 4 0x10000000
mk l1-size-0 36 4 0
mk l1-size-small 24 8 0x40000000 # 1 GiB needs 2 L1 entries, the image has 1
mk l1-offset-unaligned 40 8 0x30200
mk l1-offset-0 40 8 0
mk l1-offset-past-eof 40 8 0x10000000
mk l1-offset-past-eof-huge 40 8 0xffffffffffff0000
mk l1-offset-reftable 40 8 $RT
mk l1-spans-eof 40 8 0x70000 36 4 0x4000 24 8 0x80000000000 # 128 KiB L1 at the last cluster
# --- L1 entries --------------------------------------------------------------------------------
mk l1e-header $L1 8 0x8000000000000000
mk l1e-header-offset-200 $L1 8 0x8000000000000200
mk l1e-unaligned $L1 8 0x8000000000042a00
mk l1e-past-eof $L1 8 0x8000000010000000
mk l1e-past-eof-huge $L1 8 0x80fffffffffe0000
mk l1e-reftable $L1 8 0x8000000000010000
mk l1e-refblock $L1 8 0x8000000000020000
mk l1e-self $L1 8 0x8000000000030000
mk l1e-data $L1 8 0x8000000000050000
mk l1e-reserved-bits $L1 8 0xff00000000040000
mk l1e-no-copied $L1 8 0x0000000000040000
# --- L2 entries --------------------------------------------------------------------------------
mk l2e-header $L2 8 0x8000000000000000
mk l2e-header-nocopied $L2 8 0x0000000000000200
mk l2e-unaligned $L2 8 0x8000000000052a00
mk l2e-past-eof $L2 8 0x8000000100000000
mk l2e-past-eof-huge $L2 8 0x80fffffffffe0000
mk l2e-reftable $L2 8 0x8000000000010000
mk l2e-refblock $L2 8 0x8000000000020000
mk l2e-l1 $L2 8 0x8000000000030000
mk l2e-self $L2 8 0x8000000000040000
mk l2e-reserved-bits $L2 8 0xbf00000000050000
mk l2e-zero-alloc-unaligned $L2 8 0x8000000000002a01
mk l2e-zero-alloc-header $L2 8 0x8000000000000001
mk l2e-zero-alloc-reftable $L2 8 0x8000000000010001
mk l2e-guest-2m-header $((L2 + 32 * 8)) 8 0x8000000000000000
# compressed entries (cluster_bits 16: offset bits 0-53, additional sectors bits 54-61)
mk comp-size-max $((L2 + 16 * 8)) 8 0x7fc0000000060000
mk comp-offset-past-eof $((L2 + 16 * 8)) 8 0x4000000100000000
mk comp-offset-max $((L2 + 16 * 8)) 8 0x403fffffffffffff
mk comp-offset-header $((L2 + 16 * 8)) 8 0x4000000000000000
mk comp-offset-near-eof $((L2 + 16 * 8)) 8 0x407000000007fff0
mk comp-copied $((L2 + 16 * 8)) 8 0xc000000000060000
mk comp-at-guest-0 $L2 8 0x4000000000060000 # overwritten by the rw write
# --- refcount table and blocks -----------------------------------------------------------------
mk reftable-clusters-0 56 4 0
mk reftable-clusters-huge 56 4 0xffffffff
mk reftable-clusters-2e20 56 4 0x100000
mk reftable-clusters-past-eof 56 4 0x100
mk reftable-offset-unaligned 48 8 0x10200
mk reftable-offset-0 48 8 0
mk reftable-offset-past-eof 48 8 0x10000000
mk reftable-offset-past-eof-huge 48 8 0xffffffffffff0000
mk rte-unaligned $RT 8 0x20200
mk rte-0 $RT 8 0
mk rte-header-200 $RT 8 0x200
mk rte-self $RT 8 $RT
mk rte-l1 $RT 8 $L1
mk rte-l2 $RT 8 $L2
mk rte-past-eof $RT 8 0x10000000
mk rte-past-eof-huge $RT 8 0xfffffffffffe0000
mk rte1-self $((RT + 8)) 8 $RT
mk refblock-zeroed $RB 8 0 $((RB + 8)) 8 0 $((RB + 16)) 8 0 $((RB + 24)) 8 0
mk refblock-header-0 $RB 2 0
mk refblock-max $RB 8 0xffffffffffffffff $((RB + 8)) 8 0xffffffffffffffff
# the same broken refcounts, with guest 0 unallocated so that the write has to allocate
mk alloc-refblock-zeroed $L2 8 0 $RB 8 0 $((RB + 8)) 8 0 $((RB + 16)) 8 0 $((RB + 24)) 8 0
mk alloc-refblock-header-0 $L2 8 0 $RB 2 0
mk alloc-refblock-reftable-0 $L2 8 0 $((RB + 2)) 2 0
mk alloc-refblock-l1-0 $L2 8 0 $((RB + 6)) 2 0
mk alloc-rte-0 $L2 8 0 $RT 8 0
mk alloc-rte-self $L2 8 0 $RT 8 $RT
mk alloc-rte-l2 $L2 8 0 $RT 8 $L2
mk alloc-reftable-offset-past-eof $L2 8 0 48 8 0x10000000
mk alloc-refcount-order-0 $L2 8 0 96 4 0
mk alloc-l1e-0-refblock-zeroed $L1 8 0 $RB 8 0 $((RB + 8)) 8 0
mk refcount-order-7 96 4 7
mk refcount-order-huge 96 4 0xffffffff
mk refcount-order-0 96 4 0 # 1-bit refcounts: the 16-bit block now reads as garbage
# --- feature bits, compression type, encryption ------------------------------------------------
mk incompat-bit-5 72 8 0x20
mk incompat-bit-63 72 8 0x8000000000000000
mk incompat-all 72 8 0xffffffffffffffff
mk incompat-extl2 72 8 0x10
mk incompat-data-file 72 8 0x4
mk compat-unknown 80 8 0xfffffffffffffffe
mk autoclear-unknown 88 8 0xfffffffffffffffc
mk dirty-bit 72 8 0x1
mk corrupt-bit 72 8 0x2
mk dirty-corrupt 72 8 0x3
mk compression-bit-type-0 72 8 0x8
mk compression-type-1-no-bit 104 1 1
mk compression-type-2 72 8 0x8 104 1 2
mk compression-type-255 72 8 0x8 104 1 255
mk compression-zstd-on-zlib-data 72 8 0x8 104 1 1
mk crypt-method-3 32 4 3
mk crypt-method-huge 32 4 0xffffffff
mk crypt-method-1 32 4 1
mk crypt-method-2 32 4 2
# --- snapshots ---------------------------------------------------------------------------------
mk snapshots-huge 60 4 0xffffffff 64 8 0x70000
mk snapshots-2e16 60 4 0x10000 64 8 0x70000
mk snapshots-offset-unaligned 60 4 1 64 8 0x70200
mk snapshots-offset-0 60 4 1 64 8 0
mk snapshots-past-eof 60 4 1 64 8 0x10000000
mk snapshots-garbage 60 4 1 64 8 0x70000 # the table is data pattern 7
# --- backing file name -------------------------------------------------------------------------
mk backing-offset-past-cluster 8 8 0x20000 16 4 5
mk backing-offset-huge 8 8 0xffffffffffffff00 16 4 5
mk backing-size-huge 8 8 0x200 16 4 0xffffffff
mk backing-size-1024 8 8 0x200 16 4 1024
mk backing-end-past-cluster 8 8 0xfff0 16 4 0x100
mk backing-offset-in-header 8 8 8 16 4 8
mk backing-size-0 8 8 0x200 16 4 0
# --- header extensions (the feature name table is at 112: type, length, data) ------------------
mk ext-length-past-cluster 116 4 0x10000
mk ext-length-huge 116 4 0xfffffff8
mk ext-length-unaligned 116 4 0x17f
mk ext-no-end-marker 112 4 0x12345678 116 4 0xfe80 # unknown ext filling the cluster
mk ext-backing-format-too-long 112 4 0xe2792aca 116 4 16
mk ext-backing-format-past-cluster 112 4 0xe2792aca 116 4 0x20000
mk ext-data-file-past-cluster 112 4 0x44415441 116 4 0xffffff00
mk ext-fde-past-eof 112 4 0x0537be77 116 4 16 120 8 0x10000000 128 8 0x10000 32 4 2
mk ext-bitmaps-garbage 112 4 0x23852875 116 4 24 88 8 1 120 4 0xffffffff
mk ext-feature-table-odd 116 4 47
mk ext-duplicate 504 4 0x6803f857 508 4 0
echo "$(wc -l < cases) images in $PWD"
