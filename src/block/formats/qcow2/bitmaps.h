// The persistent dirty bitmaps of a qcow2 image (qcow2-format.md §14): the bitmap directory,
// the bitmap tables and the data clusters they point at, in QEMU's encoding. The driver keeps
// the bitmaps up to date (Qcow2Node, bitmap_store.cc); this file only reads and encodes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "block/dirty_bitmap.h"
#include "block/driver.h"
#include "block/formats/qcow2/header.h"

namespace qblock::qcow2 {

inline constexpr uint32_t kBitmapInUse = 1u << 0;
inline constexpr uint32_t kBitmapAuto = 1u << 1;

struct Bitmap {
  std::string name;
  uint32_t flags = 0;
  uint8_t granularity_bits = 0;
  uint64_t table_offset = 0;
  uint32_t table_entries = 0;
};

struct BitmapDirectory {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  std::vector<Bitmap> bitmaps;
};

// The bitmap directory if the image has a bitmaps extension that autoclear bit 0 declares
// consistent; an empty directory otherwise. Validated as QEMU's open validates it, with its
// messages: the extension's length, fields and limits, the directory's structure, and each
// entry's constraints ("Bitmap 'NAME' doesn't satisfy the constraints"). Errors: EINVAL for
// those, I/O.
Task<Result<BitmapDirectory>> read_bitmap_directory(BlockNode& file, const Header& header);

// A bitmap table entry (§14): bits 9-55 the data cluster's offset, bit 0 "all ones" when the
// offset is 0; an entry 0 reads as all zeros.
inline constexpr uint64_t kBitmapTableOffsetMask = 0x00fffffffffffe00ULL;
inline constexpr uint64_t kBitmapTableAllOnes = 1;

// Number of bitmap table entries for a bitmap of a `disk_size` disk with 2^granularity_bits
// bytes per bit in `cluster_size` clusters.
uint64_t bitmap_table_entries(uint64_t disk_size, uint32_t granularity_bits, uint64_t cluster_size);

// Bitmap `b`'s table, each entry checked as QEMU checks it (reserved bits zero, a data
// cluster aligned and without the all-ones flag). Errors: EINVAL or I/O, as "Could not read
// bitmap_table table from image for bitmap 'NAME': <strerror>".
Task<Result<std::vector<uint64_t>>> read_bitmap_table(BlockNode& file, const Header& header,
                                                      const Bitmap& b);
// Bitmap `b` of a disk of `disk_size` bytes, with the data its table points at.
// REQUIRES: `b` is not in use (an in-use bitmap's data is not trustworthy). Errors: those of
// read_bitmap_table(); I/O reading the data ("Could not read bitmap 'NAME' from image").
Task<Result<DirtyBitmap>> read_bitmap(BlockNode& file, const Header& header, const Bitmap& b,
                                      uint64_t disk_size);
// The directory entries of `bitmaps` as QEMU writes them (each padded to 8 bytes).
std::vector<uint8_t> encode_bitmap_directory(const std::vector<Bitmap>& bitmaps);
// The 24-byte bitmaps header extension.
std::vector<uint8_t> encode_bitmaps_extension(uint32_t nb_bitmaps, uint64_t directory_bytes,
                                              uint64_t directory_offset);

}  // namespace qblock::qcow2
