// The qcow2 snapshot table (see snapshot.h).
#include "block/formats/qcow2/snapshot.h"

#include "base/byte_order.h"

namespace qblock::qcow2 {

namespace {

// Reads `buf.size()` bytes at `offset`, all of which must lie inside the file.
Task<Status> read_inside(BlockNode& file, uint64_t offset, std::vector<uint8_t>& buf) {
  if (offset > file.length() || buf.size() > file.length() - offset) {
    co_return fail(
        Error::with_message(EINVAL, "Snapshot table extends beyond the end of the file"));
  }
  if (buf.empty()) co_return ok();
  co_return co_await file.read(offset, IoVec(buf.data(), buf.size()));
}

}  // namespace

Task<Result<SnapshotTable>> read_snapshot_table(BlockNode& file, const Header& header) {
  SnapshotTable table;
  uint64_t pos = header.snapshots_offset;
  for (uint32_t n = 0; n < header.nb_snapshots; ++n) {
    std::vector<uint8_t> fixed(40);
    Status s = co_await read_inside(file, pos, fixed);
    if (!s) co_return fail(s.error());
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
    std::vector<uint8_t> rest(uint64_t{extra_len} + id_len + name_len);
    s = co_await read_inside(file, pos + 40, rest);
    if (!s) co_return fail(s.error());
    snap.extra_data.assign(rest.begin(), rest.begin() + extra_len);
    if (extra_len >= 8) snap.vm_state_size = load_be64(&rest[0]);
    if (extra_len >= 24 && load_be64(&rest[16]) != ~uint64_t{0}) {
      snap.icount = load_be64(&rest[16]);
    }
    snap.id.assign(rest.begin() + extra_len, rest.begin() + extra_len + id_len);
    snap.name.assign(rest.begin() + extra_len + id_len, rest.end());
    pos += (40 + rest.size() + 7) / 8 * 8;
    table.snapshots.push_back(std::move(snap));
  }
  table.bytes = pos - header.snapshots_offset;
  co_return table;
}

}  // namespace qblock::qcow2
