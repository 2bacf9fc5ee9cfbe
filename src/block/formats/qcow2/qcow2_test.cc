// qcow2 driver tests at the request level: the I/O each allocating-write path sends to the
// file (block-semantics.md §5, qcow2-format.md §15.3, §17.2), over a recording memory node.
#include "block/formats/qcow2/qcow2.h"

#include <gtest/gtest.h>

#include "block/formats/qcow2/create.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using Kind = RecordedRequest::Kind;
using testing::LoopTest;
using testing::TempDir;

class Qcow2RequestTest : public LoopTest {
 protected:
  // A fresh 64 MiB image with 64 KiB clusters loaded into a recording memory node.
  NodePtr open_fresh(const std::string& backing_json = "") {
    Qcow2CreateOptions opts;
    opts.filename = dir_.file("t.qcow2");
    opts.size = 64 << 20;
    Status s = run_sync(*loop_, create_qcow2(*loop_, opts));
    EXPECT_TRUE(s) << s.error().message();
    std::string json =
        R"({"driver":"qcow2","file":{"driver":"memory","efficient-zeroes":true,"image":")" +
        opts.filename + "\"}";
    if (!backing_json.empty()) json += R"(,"backing":)" + backing_json;
    return open(json + "}");
  }
  MemoryNode& file_of(BlockNode& qcow2) { return static_cast<MemoryNode&>(*qcow2.primary_child()); }
  std::vector<RecordedRequest> data_io(const MemoryNode& m) {
    std::vector<RecordedRequest> out;
    for (const RecordedRequest& r : m.log()) {
      if (r.kind != Kind::kFlush) out.push_back(r);
    }
    return out;
  }
  TempDir dir_;
};

// block-semantics.md §5.2 / qcow2-format.md §17.2: a 4 KiB write into a new cluster without
// backing data zeroes the whole cluster with one efficient call and writes only guest data.
TEST_F(Qcow2RequestTest, FirstWriteIntoNewClusterIsOneAllocateZeroingPlusOneDataWrite) {
  NodePtr node = open_fresh();
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> buf(4096, 0x11);
  ASSERT_OK(run_sync(*loop_, node->write(4096, IoVec(buf.data(), buf.size()))));
  auto io = data_io(file);
  // qcow2-format.md §17.2: refblock, zeroed L2 at 0x40000, L1[0], then the new data cluster
  // 0x50000: one efficient zeroing of the whole cluster followed by the 4 KiB of guest data.
  auto zeroing =
      std::find(io.begin(), io.end(),
                RecordedRequest{Kind::kWriteZeroes, 0x50000, 65536, RequestFlag::kNoFallback});
  ASSERT_NE(zeroing, io.end());
  ASSERT_NE(zeroing + 1, io.end());
  EXPECT_EQ(*(zeroing + 1), (RecordedRequest{Kind::kWrite, 0x51000, 4096, {}}));
  EXPECT_NE(std::find(io.begin(), zeroing, RecordedRequest{Kind::kWrite, 0x40000, 65536, {}}),
            zeroing)
      << "the new L2 table is written before the data";
  for (const RecordedRequest& r : io) {
    EXPECT_FALSE(r.kind == Kind::kWrite && r.offset >= 0x50000 && r.offset < 0x60000 &&
                 r.bytes != 4096)
        << "no zero padding may be written into the data cluster";
  }
  // Reads back, and the rest of the cluster reads as zero.
  std::vector<uint8_t> back(65536, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back[4095], 0);
  EXPECT_EQ(back[4096], 0x11);
  EXPECT_EQ(back[8191], 0x11);
  EXPECT_EQ(back[8192], 0);
  close(*node);
}

// block-semantics.md §5.3: COW from a backing file with data is one merged vectored write of
// head + data + tail, and no zeroing.
TEST_F(Qcow2RequestTest, CowFromBackingIsOneMergedWrite) {
  NodePtr node = open_fresh(R"({"driver":"memory","size":67108864})");
  // Give the backing file data so the COW regions are not zero.
  BlockNode* backing = node->child(ChildRole::kBacking);
  ASSERT_NE(backing, nullptr);
  auto& backing_data = static_cast<MemoryNode&>(*backing).data();
  std::fill_n(backing_data.begin(), 65536, 0x5b);
  MemoryNode& file = file_of(*node);
  file.clear_log();
  std::vector<uint8_t> buf(4096, 0x22);
  ASSERT_OK(run_sync(*loop_, node->write(4096, IoVec(buf.data(), buf.size()))));
  int data_cluster_writes = 0;
  for (const RecordedRequest& r : data_io(file)) {
    EXPECT_NE(r.kind, Kind::kWriteZeroes);
    if (r.kind == Kind::kWrite && r.offset == 0x50000) {
      EXPECT_EQ(r.bytes, 65536u);
      ++data_cluster_writes;
    }
  }
  EXPECT_EQ(data_cluster_writes, 1);
  std::vector<uint8_t> back(65536);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back[0], 0x5b);
  EXPECT_EQ(back[4096], 0x22);
  EXPECT_EQ(back[8192], 0x5b);
  close(*node);
}

TEST_F(Qcow2RequestTest, WriteZeroesOfWholeClustersIsMetadataOnly) {
  NodePtr node = open_fresh();
  std::vector<uint8_t> buf(131072, 0x33);
  ASSERT_OK(run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()))));
  MemoryNode& file = file_of(*node);
  file.clear_log();
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 131072, RequestFlag::kNoFallback)));
  for (const RecordedRequest& r : data_io(file)) {
    EXPECT_TRUE(r.kind != Kind::kWrite || r.bytes <= 512) << "only L2 entries are written";
  }
  std::vector<uint8_t> back(131072, 0xff);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_TRUE(std::all_of(back.begin(), back.end(), [](uint8_t b) { return b == 0; }));
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
