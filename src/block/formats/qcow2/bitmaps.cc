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

uint64_t bitmap_table_entries(uint64_t disk_size, uint32_t granularity_bits,
                              uint64_t cluster_size) {
  const uint64_t granules = (disk_size + (uint64_t{1} << granularity_bits) - 1) >> granularity_bits;
  const uint64_t bytes = (granules + 7) / 8;
  return (bytes + cluster_size - 1) / cluster_size;
}

Task<Result<std::vector<uint64_t>>> read_bitmap_table(BlockNode& file, const Header& header,
                                                      const Bitmap& b) {
  auto error = [&b](int e) {
    return Error::with_message(
        e, fmt::format("Could not read bitmap_table table from image for bitmap '{}': {}", b.name,
                       Error::from_errno(e).errno_text()));
  };
  // satisfies_constraints() bounded table_entries by the bitmap's size (at most 512 MiB of
  // data, so a table of at most 8 MiB).
  std::vector<uint8_t> raw(uint64_t{b.table_entries} * 8);
  Status s = co_await read_zero_padded(file, b.table_offset, raw);
  if (!s) co_return fail(error(s.error().errnum()));
  std::vector<uint64_t> table(b.table_entries);
  const uint64_t cs = header.cluster_size();
  for (uint32_t i = 0; i < b.table_entries; ++i) {
    const uint64_t e = load_be64(&raw[uint64_t{i} * 8]);
    const uint64_t offset = e & kBitmapTableOffsetMask;
    if ((e & ~kBitmapTableOffsetMask & ~kBitmapTableAllOnes) || offset % cs ||
        (offset && (e & kBitmapTableAllOnes))) {
      co_return fail(error(EINVAL));
    }
    table[i] = e;
  }
  co_return table;
}

Task<Result<DirtyBitmap>> read_bitmap(BlockNode& file, const Header& header, const Bitmap& b,
                                      uint64_t disk_size) {
  Task<Result<std::vector<uint64_t>>> read_table = read_bitmap_table(file, header, b);
  Result<std::vector<uint64_t>> table = co_await std::move(read_table);
  if (!table) co_return fail(table.error());
  DirtyBitmap bitmap(disk_size, uint64_t{1} << b.granularity_bits);
  const uint64_t cs = header.cluster_size();
  const uint64_t total = bitmap.serialized_bytes();
  std::vector<uint8_t> cluster(cs);
  for (std::size_t i = 0; i < table->size() && i * cs < total; ++i) {
    const uint64_t e = (*table)[i];
    const uint64_t offset = e & kBitmapTableOffsetMask;
    const uint64_t first = i * cs;
    const std::size_t n = static_cast<std::size_t>(std::min(cs, total - first));
    if (offset == 0) {
      if (!(e & kBitmapTableAllOnes)) continue;
      std::fill(cluster.begin(), cluster.end(), 0xff);
    } else {
      Status s = co_await read_zero_padded(file, offset, cluster);
      if (!s) {
        co_return fail(Error::with_message(
            s.error().errnum(), fmt::format("Could not read bitmap '{}' from image: {}", b.name,
                                            s.error().errno_text())));
      }
    }
    bitmap.deserialize(first, std::span<const uint8_t>(cluster.data(), n));
  }
  co_return bitmap;
}

std::vector<uint8_t> encode_bitmap_directory(const std::vector<Bitmap>& bitmaps) {
  std::vector<uint8_t> out;
  for (const Bitmap& b : bitmaps) {
    const std::size_t at = out.size();
    const std::size_t len = (kEntryHeaderBytes + b.name.size() + 7) / 8 * 8;
    out.resize(at + len, 0);
    store_be64(&out[at], b.table_offset);
    store_be32(&out[at + 8], b.table_entries);
    store_be32(&out[at + 12], b.flags);
    out[at + 16] = kDirtyTrackingType;
    out[at + 17] = b.granularity_bits;
    store_be16(&out[at + 18], static_cast<uint16_t>(b.name.size()));
    store_be32(&out[at + 20], 0);
    std::copy(b.name.begin(), b.name.end(), out.begin() + static_cast<std::ptrdiff_t>(at + 24));
  }
  return out;
}

std::vector<uint8_t> encode_bitmaps_extension(uint32_t nb_bitmaps, uint64_t directory_bytes,
                                              uint64_t directory_offset) {
  std::vector<uint8_t> out(24, 0);
  store_be32(&out[0], nb_bitmaps);
  store_be64(&out[8], directory_bytes);
  store_be64(&out[16], directory_offset);
  return out;
}

}  // namespace qblock::qcow2
