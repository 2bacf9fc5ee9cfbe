// The qcow2 bitmap directory (see bitmaps.h).
#include "block/formats/qcow2/bitmaps.h"

#include "base/byte_order.h"

namespace qblock::qcow2 {

Task<Result<BitmapDirectory>> read_bitmap_directory(BlockNode& file, const Header& header) {
  BitmapDirectory dir;
  if (!header.bitmaps || header.bitmaps->size() < 24 ||
      !(header.autoclear_features & kAutoclearBitmaps)) {
    co_return dir;
  }
  const uint8_t* ext = header.bitmaps->data();
  const uint32_t nb_bitmaps = load_be32(ext);
  dir.bytes = load_be64(ext + 8);
  dir.offset = load_be64(ext + 16);
  if (dir.bytes > (64 << 20)) {
    co_return fail(Error::with_message(EINVAL, "Bitmap directory is too large"));
  }
  std::vector<uint8_t> raw(dir.bytes);
  if (!raw.empty()) {
    if (dir.offset > file.length() || raw.size() > file.length() - dir.offset) {
      co_return fail(Error::with_message(EINVAL, "Bitmap directory beyond the end of the file"));
    }
    Status s = co_await file.read(dir.offset, IoVec(raw.data(), raw.size()));
    if (!s) co_return fail(s.error());
  }
  uint64_t pos = 0;
  for (uint32_t n = 0; n < nb_bitmaps && pos + 24 <= raw.size(); ++n) {
    Bitmap b;
    b.table_offset = load_be64(&raw[pos]);
    b.table_entries = load_be32(&raw[pos + 8]);
    b.flags = load_be32(&raw[pos + 12]);
    b.granularity_bits = raw[pos + 17];
    const uint16_t name_size = load_be16(&raw[pos + 18]);
    const uint32_t extra_size = load_be32(&raw[pos + 20]);
    const uint64_t name_at = pos + 24 + extra_size;
    if (name_at + name_size > raw.size()) break;
    b.name.assign(raw.begin() + static_cast<std::ptrdiff_t>(name_at),
                  raw.begin() + static_cast<std::ptrdiff_t>(name_at + name_size));
    pos = (name_at + name_size + 7) / 8 * 8;
    dir.bitmaps.push_back(std::move(b));
  }
  co_return dir;
}

}  // namespace qblock::qcow2
