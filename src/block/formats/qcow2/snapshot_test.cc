// The snapshot table codec (qcow2-format.md §8.1): what read_snapshot_table() makes of QEMU's
// limits with and without the repair mode, and the bytes encode_snapshot_table() writes for
// `check -r all` (checked against qemu-img 7.2 in tests/iotests/img/024-repair-snapshots).
#include "block/formats/qcow2/snapshot.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "base/byte_order.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kTableOffset = 0x10000;

// One raw entry: the fixed part, `extra` (declared as `declared_extra` bytes), id and name.
std::vector<uint8_t> raw_entry(uint64_t l1_offset, const std::vector<uint8_t>& extra,
                               uint32_t declared_extra, const std::string& id,
                               const std::string& name) {
  std::vector<uint8_t> e(40, 0);
  store_be64(&e[0], l1_offset);
  store_be32(&e[8], 1);
  store_be16(&e[12], static_cast<uint16_t>(id.size()));
  store_be16(&e[14], static_cast<uint16_t>(name.size()));
  store_be32(&e[36], declared_extra);
  e.insert(e.end(), extra.begin(), extra.end());
  e.insert(e.end(), id.begin(), id.end());
  e.insert(e.end(), name.begin(), name.end());
  e.resize((e.size() + 7) / 8 * 8, 0);
  return e;
}

std::vector<uint8_t> extra24(uint64_t vm_state, uint64_t disk_size, uint64_t icount) {
  std::vector<uint8_t> x(24);
  store_be64(&x[0], vm_state);
  store_be64(&x[8], disk_size);
  store_be64(&x[16], icount);
  return x;
}

class Qcow2SnapshotTableTest : public LoopTest {
 protected:
  // Writes `table` at kTableOffset of a fresh file and opens it.
  NodePtr file_with(const std::vector<uint8_t>& table) {
    std::ofstream(path_).flush();
    NodePtr file = open(R"({"driver":"file","filename":")" + path_ + "\"}");
    if (!file) return nullptr;
    std::vector<uint8_t> copy = table;
    EXPECT_OK(run_sync(*loop_, file->write(kTableOffset, IoVec(copy.data(), copy.size()))));
    return file;
  }
  Header header(uint32_t nb) const {
    Header h;
    h.nb_snapshots = nb;
    h.snapshots_offset = kTableOffset;
    return h;
  }
  Result<SnapshotTable> read(BlockNode& file, uint32_t nb, SnapshotRepair repair) {
    return run_sync(*loop_, read_snapshot_table(file, header(nb), repair));
  }

  TempDir dir_;
  std::string path_ = dir_.file("t.img");
};

TEST_F(Qcow2SnapshotTableTest, EncodesAsQemuWrites) {
  Snapshot big;
  big.l1_table_offset = 0x70000;
  big.l1_size = 1;
  big.id = "1";
  big.name = "s1";
  big.vm_state_size = 0x100001234;  // over 4 GiB: the 32-bit field says 0
  big.icount = 7;
  big.extra_data = extra24(0x100001234, 0x2000000, 7);
  const char unknown[] = "ABCDEFGHIJKLMNOP";
  big.extra_data.insert(big.extra_data.end(), unknown, unknown + 16);
  Snapshot incomplete;  // no extra data: completed with the virtual size, icount not recorded
  incomplete.l1_table_offset = 0x80000;
  incomplete.l1_size = 1;
  incomplete.id = "2";
  incomplete.name = "s2";
  incomplete.vm_state_size = 0x1234;
  const std::vector<uint8_t> out = encode_snapshot_table({big, incomplete}, 0x1000000);

  std::vector<uint8_t> want = raw_entry(0x70000, big.extra_data, 40, "1", "s1");
  const std::vector<uint8_t> second =
      raw_entry(0x80000, extra24(0x1234, 0x1000000, ~uint64_t{0}), 24, "2", "s2");
  want.insert(want.end(), second.begin(), second.end());
  store_be32(&want[88 + 32], 0x1234);  // the second entry's 32-bit vm_state_size
  EXPECT_EQ(out, want);
}

TEST_F(Qcow2SnapshotTableTest, ExtraDataOver1KiBIsCutOnlyByTheRepair) {
  std::vector<uint8_t> table = raw_entry(0x70000, extra24(0, 1 << 24, 0), 24, "1", "s1");
  std::vector<uint8_t> long_extra = extra24(5, 1 << 24, 0);
  for (int i = 0; i < 2000; ++i) long_extra.push_back(static_cast<uint8_t>(i));
  const std::vector<uint8_t> second = raw_entry(0x80000, long_extra, 2024, "2", "s2");
  table.insert(table.end(), second.begin(), second.end());
  const std::vector<uint8_t> third = raw_entry(0x90000, extra24(0, 1 << 24, 0), 24, "3", "s3");
  table.insert(table.end(), third.begin(), third.end());
  NodePtr file = file_with(table);
  ASSERT_TRUE(file);

  Result<SnapshotTable> plain = read(*file, 3, SnapshotRepair::kNo);
  ASSERT_FALSE(plain);
  EXPECT_EQ(plain.error().errnum(), EFBIG);
  EXPECT_EQ(plain.error().message(),
            "Too much extra metadata in snapshot table entry 1\n"
            "You can force-remove this extra metadata with qemu-img check -r all");

  Result<SnapshotTable> repaired = read(*file, 3, SnapshotRepair::kYes);
  ASSERT_OK(repaired);
  ASSERT_EQ(repaired->snapshots.size(), 3u);
  EXPECT_EQ(repaired->snapshots[1].extra_data.size(), 1024u);
  EXPECT_TRUE(std::equal(repaired->snapshots[1].extra_data.begin(),
                         repaired->snapshots[1].extra_data.end(), long_extra.begin()));
  EXPECT_EQ(repaired->snapshots[1].vm_state_size, 5u);
  // The entry still takes its declared length: the next one is found after it.
  EXPECT_EQ(repaired->snapshots[2].name, "s3");
  EXPECT_EQ(repaired->bytes, table.size());
  ASSERT_EQ(repaired->extra_data_cut.size(), 1u);
  EXPECT_EQ(repaired->extra_data_cut[0], std::make_pair(1u, 2024u));
  EXPECT_EQ(repaired->overhanging, 0u);
  close(*file);
}

TEST_F(Qcow2SnapshotTableTest, TheRepairDropsTheEntriesPast64MiB) {
  std::vector<uint8_t> table = raw_entry(0x70000, extra24(0, 1 << 24, 0), 24, "1", "s1");
  const std::vector<uint8_t> second =
      raw_entry(0x80000, extra24(0, 1 << 24, 0), 0xffffffff, "2", "s2");
  table.insert(table.end(), second.begin(), second.end());
  NodePtr file = file_with(table);
  ASSERT_TRUE(file);

  Result<SnapshotTable> repaired = read(*file, 3, SnapshotRepair::kYes);
  ASSERT_OK(repaired);
  ASSERT_EQ(repaired->snapshots.size(), 1u);
  EXPECT_EQ(repaired->snapshots[0].name, "s1");
  EXPECT_EQ(repaired->bytes, 72u);
  EXPECT_EQ(repaired->overhanging, 2u);
  ASSERT_EQ(repaired->extra_data_cut.size(), 1u);
  EXPECT_EQ(repaired->extra_data_cut[0], std::make_pair(1u, 0xffffffffu));
  close(*file);
}

TEST_F(Qcow2SnapshotTableTest, EncodedTableReadsBack) {
  Snapshot s;
  s.l1_table_offset = 0x70000;
  s.l1_size = 1;
  s.id = "7";
  s.name = "seven";
  s.date_sec = 1234;
  s.date_nsec = 5000;
  s.vm_clock_nsec = 99;
  s.vm_state_size = 4096;
  s.extra_data = extra24(4096, 1 << 24, ~uint64_t{0});
  NodePtr file = file_with(encode_snapshot_table({s, s}, 1 << 24));
  ASSERT_TRUE(file);
  Result<SnapshotTable> back = read(*file, 2, SnapshotRepair::kNo);
  ASSERT_OK(back);
  ASSERT_EQ(back->snapshots.size(), 2u);
  const Snapshot& r = back->snapshots[1];
  EXPECT_EQ(r.l1_table_offset, s.l1_table_offset);
  EXPECT_EQ(r.id, s.id);
  EXPECT_EQ(r.name, s.name);
  EXPECT_EQ(r.date_sec, s.date_sec);
  EXPECT_EQ(r.date_nsec, s.date_nsec);
  EXPECT_EQ(r.vm_clock_nsec, s.vm_clock_nsec);
  EXPECT_EQ(r.vm_state_size, s.vm_state_size);
  EXPECT_FALSE(r.icount);
  EXPECT_EQ(r.extra_data, s.extra_data);
  close(*file);
}

}  // namespace
}  // namespace qblock::qcow2
