#!/usr/bin/env bash
# Writes the seed corpus of fuzz/qcow2_image_fuzz.cc into DIR (default: fuzz/corpus/qcow2_image
# beside this script): small images made by qemu-img/qemu-io 7.2, one per shape of the format
# the driver handles differently, and the mutated images of tests/mutations/images (issue 18).
# Reproducers the fuzzer found are kept in DIR as crash-*.qcow2 / timeout-*.qcow2 / oom-*.qcow2
# and are not touched here. Images over 1 MiB, the fuzz target's limit, are left out (2 MiB
# clusters cannot be that small: the L1 table alone lands at 6 MiB); the dictionary's
# cluster_bits values reach them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/corpus/qcow2_image}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/qcow2-seeds.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
export LC_ALL=C

create() { qemu-img create -q -f qcow2 "$@"; }
io() { qemu-io "$@" > /dev/null; }
# Data, a zero cluster, a misaligned write and a discard: the cluster types of an ordinary image.
fill() {
  io -c 'write -P 0x11 0 64k' -c 'write -P 0x22 200k 5000' -c 'write -z 256k 64k' \
    -c 'write -P 0x33 448k 64k' -c 'discard 448k 64k' -c 'write -P 0x44 960k 64k' "$@"
}

create plain.qcow2 1M
fill plain.qcow2

create -o cluster_size=4k small-clusters.qcow2 1M
fill small-clusters.qcow2

create -o cluster_size=512 c512.qcow2 1M
fill c512.qcow2

# A backing chain: the overlay is the seed (its backing file is a memory node in the fuzzer).
create -o cluster_size=4k base.qcow2 1M
io -c 'write -P 0x55 0 1M' base.qcow2
create -o cluster_size=4k -b base.qcow2 -F qcow2 backing.qcow2
io -c 'write -P 0x66 6k 2k' -c 'write -z 64k 4k' backing.qcow2
create -o cluster_size=4k -b base.raw -F raw -u backing-raw.qcow2 1M

qemu-img create -q -f raw data.raw 1M
io -f raw -c 'write -P 0x77 0 192k' -c 'write -P 0x78 512k 8k' data.raw
qemu-img convert -c -O qcow2 -o cluster_size=4k data.raw compressed.qcow2
qemu-img convert -c -O qcow2 -o cluster_size=4k,compression_type=zstd data.raw compressed-zstd.qcow2
create -o cluster_size=4k compressed-io.qcow2 1M
io -c 'write -c -P 0x79 0 4k' -c 'write -c -P 0x7a 4k 4k' -c 'write -P 0x7b 2k 1k' \
  compressed-io.qcow2

create -o cluster_size=4k snapshots.qcow2 1M
io -c 'write -P 0x01 0 16k' snapshots.qcow2
qemu-img snapshot -c s1 snapshots.qcow2
io -c 'write -P 0x02 8k 16k' snapshots.qcow2
qemu-img snapshot -c s2 snapshots.qcow2
io -c 'write -P 0x03 0 4k' snapshots.qcow2

create -o cluster_size=4k bitmap.qcow2 1M
qemu-img bitmap --add bitmap.qcow2 b0
qemu-img bitmap --add -g 64k bitmap.qcow2 b1
qemu-img bitmap --disable bitmap.qcow2 b1
io -c 'write -P 0x04 0 64k' bitmap.qcow2

for bits in 1 64; do
  create -o cluster_size=4k,refcount_bits=$bits rc$bits.qcow2 1M
  fill rc$bits.qcow2
done

create -o cluster_size=4k,compat=0.10 v2.qcow2 1M
fill v2.qcow2
create -o cluster_size=4k,compat=0.10 v2-snapshot.qcow2 1M
io -c 'write -P 0x05 0 8k' v2-snapshot.qcow2
qemu-img snapshot -c s1 v2-snapshot.qcow2
io -c 'write -P 0x06 4k 8k' v2-snapshot.qcow2

create -o cluster_size=4k,lazy_refcounts=on lazy.qcow2 1M
fill lazy.qcow2
# Killed mid-session with lazy refcounts: the dirty bit stays set, refcounts are stale.
create -o cluster_size=4k,lazy_refcounts=on lazy-dirty.qcow2 1M
(io -c 'write -P 0x07 0 16k' -c 'write -P 0x08 100k 4k' -c 'sigraise 9' lazy-dirty.qcow2) \
  2> /dev/null || true

create -o cluster_size=4k,preallocation=metadata prealloc-metadata.qcow2 512k
io -c 'write -P 0x09 4k 4k' prealloc-metadata.qcow2

create -o cluster_size=16k,extended_l2=on extended-l2.qcow2 1M
io -c 'write -P 0x0a 0 8k' extended-l2.qcow2
# Every subcluster state (qcow2-format.md §7.2): partly written and COW'd subclusters,
# unallocated ones of an allocated cluster, zero ones with and without a host cluster, a
# compressed cluster, a shared cluster's copy, over a backing file.
create -o cluster_size=16k,extended_l2=on -b backing.qcow2 -F qcow2 extended-l2-subclusters.qcow2
io -c 'write -P 0x0c 1k 3k' -c 'write -z 20k 2k' -c 'write -c -P 0x0d 64k 16k' \
  -c 'write -z -u 128k 16k' -c 'write -P 0x0e 200k 1k' -c 'write -z 210k 1k' \
  -c 'discard 240k 16k' extended-l2-subclusters.qcow2
create -o cluster_size=4k,data_file=external.raw external-data.qcow2 1M
io -c 'write -P 0x0b 0 8k' external-data.qcow2
# Encrypted (LUKS): only the header cluster, with its full disk encryption extension; the
# LUKS header itself is over 1 MiB.
create --object secret,id=sec0,data=fuzz -o cluster_size=4k,encrypt.format=luks \
  -o encrypt.key-secret=sec0,encrypt.iter-time=10 luks.qcow2 1M
head -c 4096 luks.qcow2 > luks-header.qcow2

seeds=(plain small-clusters c512 backing backing-raw compressed compressed-zstd compressed-io
  snapshots bitmap rc1 rc64 v2 v2-snapshot lazy lazy-dirty prealloc-metadata extended-l2
  extended-l2-subclusters external-data luks-header)
for name in "${seeds[@]}"; do
  size=$(stat -c %s "$name.qcow2")
  if ((size > 1 << 20)); then
    echo "skipped $name.qcow2: $size bytes" >&2
    continue
  fi
  cp "$name.qcow2" "$out/$name.qcow2"
done

# The mutated images of issue 18 (the inputs of tests/mutations/run.sh), as they are, but for
# the five over 1 MiB, which the fuzz target refuses (tests/mutations/run.sh has them).
for image in "$here"/../tests/mutations/images/*.qcow2; do
  if (($(stat -c %s "$image") > 1 << 20)); then continue; fi
  cp "$image" "$out/mutation-$(basename "$image")"
done
echo "$(ls "$out" | wc -l) seeds in $out"
