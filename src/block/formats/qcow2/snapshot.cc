// The qcow2 snapshot table (see snapshot.h).
#include "block/formats/qcow2/snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "base/byte_order.h"
#include "block/formats/qcow2/metadata_read.h"

namespace qblock::qcow2 {

namespace {

// QEMU's limits on the table (qcow2-format.md §8.1): extra data per entry, and the bytes the
// whole table may take.
constexpr uint32_t kMaxExtraDataBytes = 1024;
constexpr uint64_t kMaxTableBytes = uint64_t{1024} * kMaxSnapshots;
// How much of the table is read at once.
constexpr uint64_t kWindowBytes = 64 << 10;

// A name as QEMU sees it: a C string, so it ends at the first NUL.
std::string c_string(const uint8_t* data, std::size_t len) {
  if (len == 0) return {};
  const auto* end = static_cast<const uint8_t*>(std::memchr(data, 0, len));
  return std::string(data, end ? end : data + len);
}

Error too_big(std::string message, std::string hint) {
  return Error::with_message(EFBIG, std::move(message) + "\n" + std::move(hint));
}

}  // namespace

Task<Result<SnapshotTable>> read_snapshot_table(BlockNode& file, const Header& header) {
  SnapshotTable table;
  // The table is read through a window of the file, so that thousands of entries (a damaged
  // nb_snapshots) cost a few reads rather than two reads and two buffers each.
  std::vector<uint8_t> window;
  uint64_t window_pos = 0;
  // Whether [at, at + len) lies in the window.
  auto in_window = [&window, &window_pos](uint64_t at, uint64_t len) {
    return at >= window_pos && len <= window.size() && at - window_pos <= window.size() - len;
  };
  uint64_t pos = header.snapshots_offset;
  for (uint32_t n = 0; n < header.nb_snapshots; ++n) {
    if (!in_window(pos, 40)) {
      window_pos = pos;
      window.resize(kWindowBytes);
      Status s = co_await read_zero_padded(file, window_pos, window);
      if (!s) co_return fail(s.error());
    }
    const uint8_t* fixed = window.data() + (pos - window_pos);
    Snapshot snap;
    snap.l1_table_offset = load_be64(&fixed[0]);
    snap.l1_size = load_be32(&fixed[8]);
    const uint16_t id_len = load_be16(&fixed[12]);
    const uint16_t name_len = load_be16(&fixed[14]);
    snap.date_sec = load_be32(&fixed[16]);
    snap.date_nsec = load_be32(&fixed[20]);
    snap.vm_clock_nsec = load_be64(&fixed[24]);
    snap.vm_state_size = load_be32(&fixed[32]);
    const uint32_t extra_len = load_be32(&fixed[36]);
    if (extra_len > kMaxExtraDataBytes) {
      co_return fail(
          too_big(fmt::format("Too much extra metadata in snapshot table entry {}", n),
                  "You can force-remove this extra metadata with qemu-img check -r all"));
    }
    const uint64_t rest_len = uint64_t{extra_len} + id_len + name_len;
    if (!in_window(pos + 40, rest_len)) {
      window_pos = pos + 40;
      window.resize(std::max<uint64_t>(kWindowBytes, rest_len));
      Status s = co_await read_zero_padded(file, window_pos, window);
      if (!s) co_return fail(s.error());
    }
    const uint8_t* rest = window.data() + (pos + 40 - window_pos);
    snap.extra_data.assign(rest, rest + extra_len);
    if (extra_len >= 8) snap.vm_state_size = load_be64(&rest[0]);
    if (extra_len >= 24 && load_be64(&rest[16]) != ~uint64_t{0}) {
      snap.icount = load_be64(&rest[16]);
    }
    snap.id = c_string(rest + extra_len, id_len);
    snap.name = c_string(rest + extra_len + id_len, name_len);
    if (pos + 40 + rest_len - header.snapshots_offset > kMaxTableBytes) {
      co_return fail(too_big(
          "Snapshot table is too big",
          fmt::format(
              "You can force-remove all {} overhanging snapshots with qemu-img check -r all",
              header.nb_snapshots - n)));
    }
    pos += (40 + rest_len + 7) / 8 * 8;
    table.snapshots.push_back(std::move(snap));
  }
  table.bytes = pos - header.snapshots_offset;
  co_return table;
}

}  // namespace qblock::qcow2
