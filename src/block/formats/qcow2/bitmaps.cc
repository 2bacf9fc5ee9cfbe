// The qcow2 bitmap directory (see bitmaps.h).
#include "block/formats/qcow2/bitmaps.h"

#include <fmt/format.h>

#include "base/byte_order.h"
#include "block/formats/qcow2/metadata_read.h"

namespace qblock::qcow2 {

namespace {

// QEMU's limits (qcow2-format.md §14).
constexpr uint32_t kMaxBitmaps = 65535;
constexpr uint64_t kMaxDirectoryBytes = 64 << 20;
constexpr uint32_t kMaxTableEntries = 0x8000000;
constexpr uint64_t kMaxBitmapBytes = 0x20000000;
constexpr uint32_t kMinGranularityBits = 9;
constexpr uint32_t kMaxGranularityBits = 31;
constexpr uint32_t kMaxNameBytes = 1023;
constexpr uint32_t kKnownFlags = kBitmapInUse | kBitmapAuto;
constexpr uint8_t kDirtyTrackingType = 1;
constexpr uint64_t kEntryHeaderBytes = 24;

Error invalid(std::string message) { return Error::with_message(EINVAL, std::move(message)); }

// Whether a directory entry describes a bitmap QEMU would load.
bool satisfies_constraints(const Bitmap& b, uint8_t type, uint32_t name_size, const Header& h) {
  const uint64_t cs = h.cluster_size();
  if (b.table_entries == 0 || b.table_offset == 0 || b.table_offset % cs ||
      b.table_entries > kMaxTableEntries || b.granularity_bits > kMaxGranularityBits ||
      b.granularity_bits < kMinGranularityBits || (b.flags & ~kKnownFlags) ||
      name_size > kMaxNameBytes || type != kDirtyTrackingType) {
    return false;
  }
  const uint64_t bitmap_bytes = uint64_t{b.table_entries} * cs;
  if (bitmap_bytes > kMaxBitmapBytes) return false;
  // A bitmap not in use must cover the whole disk.
  return (b.flags & kBitmapInUse) || h.size <= ((bitmap_bytes * 8) << b.granularity_bits);
}

}  // namespace

Task<Result<BitmapDirectory>> read_bitmap_directory(BlockNode& file, const Header& header) {
  BitmapDirectory dir;
  if (!header.bitmaps) co_return dir;
  if (header.bitmaps->size() != 24)
    co_return fail(invalid("bitmaps_ext: Invalid extension length"));
  if (!(header.autoclear_features & kAutoclearBitmaps)) co_return dir;
  const uint8_t* ext = header.bitmaps->data();
  const uint32_t nb_bitmaps = load_be32(ext);
  dir.bytes = load_be64(ext + 8);
  dir.offset = load_be64(ext + 16);
  if (load_be32(ext + 4) != 0) co_return fail(invalid("bitmaps_ext: Reserved field is not zero"));
  if (nb_bitmaps > kMaxBitmaps) {
    co_return fail(invalid(
        fmt::format("bitmaps_ext: Image has {} bitmaps, exceeding the QEMU supported maximum of {}",
                    nb_bitmaps, kMaxBitmaps)));
  }
  if (nb_bitmaps == 0) co_return fail(invalid("found bitmaps extension with zero bitmaps"));
  if (dir.offset % header.cluster_size()) {
    co_return fail(invalid("bitmaps_ext: invalid bitmap directory offset"));
  }
  if (dir.bytes > kMaxDirectoryBytes) {
    co_return fail(invalid(fmt::format(
        "bitmaps_ext: bitmap directory size ({}) exceeds the maximum supported size ({})",
        dir.bytes, kMaxDirectoryBytes)));
  }
  if (dir.bytes == 0) co_return fail(invalid("Requested bitmap directory size is zero"));
  std::vector<uint8_t> raw(dir.bytes);
  Status s = co_await read_zero_padded(file, dir.offset, raw);
  if (!s) {
    co_return fail(Error::with_message(s.error().errnum(), "Failed to read bitmap directory"));
  }
  uint64_t pos = 0;
  while (pos < raw.size()) {
    if (raw.size() - pos < kEntryHeaderBytes) co_return fail(invalid("Broken bitmap directory"));
    if (dir.bitmaps.size() == nb_bitmaps) {
      co_return fail(invalid("More bitmaps found than specified in header extension"));
    }
    Bitmap b;
    b.table_offset = load_be64(&raw[pos]);
    b.table_entries = load_be32(&raw[pos + 8]);
    b.flags = load_be32(&raw[pos + 12]);
    const uint8_t type = raw[pos + 16];
    b.granularity_bits = raw[pos + 17];
    const uint16_t name_size = load_be16(&raw[pos + 18]);
    const uint32_t extra_size = load_be32(&raw[pos + 20]);
    const uint64_t name_at = pos + kEntryHeaderBytes + extra_size;
    const uint64_t next = (name_at + name_size + 7) / 8 * 8;
    if (next > raw.size()) co_return fail(invalid("Broken bitmap directory"));
    if (extra_size != 0) co_return fail(invalid("Bitmap extra data is not supported"));
    b.name.assign(raw.begin() + static_cast<std::ptrdiff_t>(name_at),
                  raw.begin() + static_cast<std::ptrdiff_t>(name_at + name_size));
    if (!satisfies_constraints(b, type, name_size, header)) {
      co_return fail(invalid(fmt::format("Bitmap '{}' doesn't satisfy the constraints", b.name)));
    }
    pos = next;
    dir.bitmaps.push_back(std::move(b));
  }
  if (dir.bitmaps.size() != nb_bitmaps) {
    co_return fail(invalid("Less bitmaps found than specified in header extension"));
  }
  co_return dir;
}

}  // namespace qblock::qcow2
