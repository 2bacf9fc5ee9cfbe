// Writes into images with extended L2 entries (subcluster_write.cc) that run at the same
// time: writes into a cluster another request is still linking join it (counted writers) and
// their subclusters are linked with it. The memory node completes requests asynchronously, so
// the writes of one batch really overlap.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

class SubclusterWriteTest : public LoopTest {
 protected:
  NodePtr open_fresh(uint64_t cluster_size) {
    Qcow2CreateOptions opts;
    opts.filename = dir_.file("t.qcow2");
    opts.size = 16 << 20;
    opts.cluster_size = cluster_size;
    opts.extended_l2 = true;
    EXPECT_TRUE(run_sync(*loop_, create_qcow2(*loop_, opts)).has_value());
    return open(R"({"driver":"qcow2","file":{"driver":"memory","async":true,"image":")" +
                opts.filename + "\"}}");
  }
  static Task<Status> write_at(BlockNode& node, uint64_t offset, std::vector<uint8_t>* buf) {
    co_return co_await node.write(offset, IoVec(buf->data(), buf->size()));
  }
  // The subcluster bitmap of guest cluster `index` (< 4096: the first L2 table).
  static uint64_t bitmap_of(BlockNode& node, uint64_t index) {
    const std::vector<uint8_t>& disk = static_cast<MemoryNode&>(*node.primary_child()).data();
    auto be64 = [&](uint64_t at) {
      uint64_t v = 0;
      for (int i = 0; i < 8; ++i) v = v << 8 | disk[at + i];
      return v;
    };
    const uint64_t table = be64(be64(40)) & kOffsetMask;
    return be64(table + index * 16 + 8);
  }
  TempDir dir_;
};

TEST_F(SubclusterWriteTest, ConcurrentWritesIntoOneNewClusterAllLand) {
  NodePtr node = open_fresh(65536);
  // 15 writes of 4 KiB (two 2 KiB subclusters each) into cluster 1, all in flight together;
  // the 4 KiB at 64 KiB + 60 KiB is left out and must stay unallocated.
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < 15; ++i) bufs.emplace_back(4096, static_cast<uint8_t>(i + 1));
  std::vector<Task<Status>> writes;
  for (int i = 0; i < 15; ++i) writes.push_back(write_at(*node, 65536 + i * 4096, &bufs[i]));
  std::vector<Status> done = run_sync(*loop_, when_all(std::move(writes)));
  for (const Status& s : done) ASSERT_TRUE(s.has_value()) << s.error().message();
  ASSERT_OK(run_sync(*loop_, node->flush()));
  EXPECT_EQ(bitmap_of(*node, 1), 0x3fffffffu);
  EXPECT_EQ(bitmap_of(*node, 0), 0u);
  std::vector<uint8_t> back(65536);
  ASSERT_OK(run_sync(*loop_, node->read(65536, IoVec(back.data(), back.size()))));
  for (int i = 0; i < 16; ++i) {
    const uint8_t want = i < 15 ? static_cast<uint8_t>(i + 1) : 0;
    EXPECT_TRUE(std::all_of(back.begin() + i * 4096, back.begin() + (i + 1) * 4096,
                            [&](uint8_t b) { return b == want; }))
        << "4 KiB piece " << i;
  }
  close(*node);
}

TEST_F(SubclusterWriteTest, HalfSubclusterWritesLandWhetherTheyJoinOrWait) {
  // 1 KiB writes into 2 KiB subclusters: a half whose other half the first write filled (its
  // COW) joins; the halves of subclusters nobody has filled yet wait for the link and are
  // then written in place (with their own COW).
  NodePtr node = open_fresh(65536);
  std::vector<std::vector<uint8_t>> bufs;
  for (int i = 0; i < 8; ++i) bufs.emplace_back(1024, static_cast<uint8_t>(0x10 + i));
  std::vector<Task<Status>> writes;
  for (int i = 0; i < 8; ++i) writes.push_back(write_at(*node, i * 1024, &bufs[i]));
  std::vector<Status> done = run_sync(*loop_, when_all(std::move(writes)));
  for (const Status& s : done) ASSERT_TRUE(s.has_value()) << s.error().message();
  ASSERT_OK(run_sync(*loop_, node->flush()));
  EXPECT_EQ(bitmap_of(*node, 0), 0xfu);
  std::vector<uint8_t> back(8192);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(std::all_of(back.begin() + i * 1024, back.begin() + (i + 1) * 1024,
                            [&](uint8_t b) { return b == 0x10 + i; }))
        << "1 KiB piece " << i;
  }
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
