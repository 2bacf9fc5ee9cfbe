// The qcow2 snapshot table (see snapshot.h).
#include "block/formats/qcow2/snapshot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "base/byte_order.h"
#include "block/formats/qcow2/metadata_read.h"

namespace qblock::qcow2 {

namespace {

// A name as QEMU sees it: a C string, so it ends at the first NUL.
std::string c_string(const uint8_t* data, std::size_t len) {
  if (len == 0) return {};
  const auto* end = static_cast<const uint8_t*>(std::memchr(data, 0, len));
  return std::string(data, end ? end : data + len);
}

Error too_big(std::string message, std::string hint) {
  return Error::with_message(EFBIG, std::move(message) + "\n" + std::move(hint));
}

// The fixed part of an entry (§8.1) and the extra data QEMU knows.
constexpr std::size_t kEntryHeaderBytes = 40;
constexpr std::size_t kKnownExtraDataBytes = 24;
// How much of the table is read at once.
constexpr uint64_t kWindowBytes = 64 << 10;

}  // namespace

Task<Result<SnapshotTable>> read_snapshot_table(BlockNode& file, const Header& header,
                                                SnapshotRepair repair) {
  SnapshotTable table;
  // The table is read through a window of the file, so that thousands of entries (a damaged
  // nb_snapshots) cost a few reads rather than three reads and three buffers each.
  std::vector<uint8_t> window;
  uint64_t window_pos = 0;
  // [at, at + len) of the file, read into the window unless it is there already. The pointer
  // is good until the next call.
  auto view = [&](uint64_t at, uint64_t len) -> Task<Result<const uint8_t*>> {
    const bool inside =
        at >= window_pos && len <= window.size() && at - window_pos <= window.size() - len;
    if (!inside) {
      window_pos = at;
      window.resize(std::max<uint64_t>(kWindowBytes, len));
      Status s = co_await read_zero_padded(file, window_pos, window);
      if (!s) co_return fail(s.error());
    }
    co_return window.data() + (at - window_pos);
  };
  uint64_t pos = header.snapshots_offset;
  for (uint32_t n = 0; n < header.nb_snapshots; ++n) {
    Result<const uint8_t*> fixed = co_await view(pos, kEntryHeaderBytes);
    if (!fixed) co_return fail(fixed.error());
    const uint8_t* f = *fixed;
    Snapshot snap;
    snap.l1_table_offset = load_be64(&f[0]);
    snap.l1_size = load_be32(&f[8]);
    const uint16_t id_len = load_be16(&f[12]);
    const uint16_t name_len = load_be16(&f[14]);
    snap.date_sec = load_be32(&f[16]);
    snap.date_nsec = load_be32(&f[20]);
    snap.vm_clock_nsec = load_be64(&f[24]);
    snap.vm_state_size = load_be32(&f[32]);
    const uint32_t extra_len = load_be32(&f[36]);
    uint32_t kept = extra_len;
    if (extra_len > kMaxSnapshotExtraDataBytes) {
      if (repair == SnapshotRepair::kNo) {
        co_return fail(
            too_big(fmt::format("Too much extra metadata in snapshot table entry {}", n),
                    "You can force-remove this extra metadata with qemu-img check -r all"));
      }
      // The repair keeps the first 1 KiB; the entry still takes its declared length.
      kept = kMaxSnapshotExtraDataBytes;
      table.extra_data_cut.emplace_back(n, extra_len);
    }
    Result<const uint8_t*> extra = co_await view(pos + kEntryHeaderBytes, kept);
    if (!extra) co_return fail(extra.error());
    snap.extra_data.assign(*extra, *extra + kept);
    const uint64_t names_pos = pos + kEntryHeaderBytes + extra_len;
    const uint64_t names_len = uint64_t{id_len} + name_len;
    Result<const uint8_t*> names = co_await view(names_pos, names_len);
    if (!names) co_return fail(names.error());
    snap.id = c_string(*names, id_len);
    snap.name = c_string(*names + id_len, name_len);
    if (kept >= 8) snap.vm_state_size = load_be64(&snap.extra_data[0]);
    if (kept >= kKnownExtraDataBytes && load_be64(&snap.extra_data[16]) != ~uint64_t{0}) {
      snap.icount = load_be64(&snap.extra_data[16]);
    }
    const uint64_t end = names_pos + names_len;
    if (end - header.snapshots_offset > kMaxSnapshotTableBytes) {
      if (repair == SnapshotRepair::kNo) {
        co_return fail(too_big(
            "Snapshot table is too big",
            fmt::format(
                "You can force-remove all {} overhanging snapshots with qemu-img check -r all",
                header.nb_snapshots - n)));
      }
      table.overhanging = header.nb_snapshots - n;
      break;
    }
    pos = (end + 7) / 8 * 8;
    table.snapshots.push_back(std::move(snap));
  }
  table.bytes = pos - header.snapshots_offset;
  co_return table;
}

std::vector<uint8_t> encode_snapshot_table(const std::vector<Snapshot>& snapshots,
                                           uint64_t disk_size) {
  std::vector<uint8_t> out;
  for (const Snapshot& snap : snapshots) {
    const std::size_t extra_len = std::max(kKnownExtraDataBytes, snap.extra_data.size());
    const std::size_t len = kEntryHeaderBytes + extra_len + snap.id.size() + snap.name.size();
    const std::size_t at = out.size();
    out.resize(at + (len + 7) / 8 * 8, 0);
    uint8_t* e = out.data() + at;
    store_be64(e, snap.l1_table_offset);
    store_be32(e + 8, snap.l1_size);
    store_be16(e + 12, static_cast<uint16_t>(snap.id.size()));
    store_be16(e + 14, static_cast<uint16_t>(snap.name.size()));
    store_be32(e + 16, snap.date_sec);
    store_be32(e + 20, snap.date_nsec);
    store_be64(e + 24, snap.vm_clock_nsec);
    const bool fits = snap.vm_state_size <= std::numeric_limits<uint32_t>::max();
    store_be32(e + 32, fits ? static_cast<uint32_t>(snap.vm_state_size) : 0);
    store_be32(e + 36, static_cast<uint32_t>(extra_len));
    uint8_t* extra = e + kEntryHeaderBytes;
    store_be64(extra, snap.vm_state_size);
    store_be64(extra + 8,
               snap.extra_data.size() >= 16 ? load_be64(&snap.extra_data[8]) : disk_size);
    store_be64(extra + 16, snap.icount.value_or(~uint64_t{0}));
    if (snap.extra_data.size() > kKnownExtraDataBytes) {
      std::memcpy(extra + kKnownExtraDataBytes, snap.extra_data.data() + kKnownExtraDataBytes,
                  snap.extra_data.size() - kKnownExtraDataBytes);
    }
    std::memcpy(extra + extra_len, snap.id.data(), snap.id.size());
    std::memcpy(extra + extra_len + snap.id.size(), snap.name.data(), snap.name.size());
  }
  return out;
}

}  // namespace qblock::qcow2
