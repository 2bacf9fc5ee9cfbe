// The persistent dirty bitmaps of a qcow2 image (qcow2-format.md §14): reading the bitmap
// directory, for `info` and `check`. qblock does not maintain the bitmaps themselves.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace qblock::qcow2
