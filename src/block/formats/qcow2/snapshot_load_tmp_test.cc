// Reading an internal snapshot in place of the active image (snapshot_load_tmp.cc, through
// qblock/snapshot.h's load_snapshot_tmp): the snapshot's data read back, the virtual size kept
// (a snapshot smaller than the image reads zeros past its tables), the matching rules of ids
// and names, the file left byte for byte as it was, and the refusals.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/test_util.h"
#include "qblock/snapshot.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

class Qcow2SnapshotLoadTmpTest : public LoopTest {
 protected:
  // base_: 4 MiB; s1 = 1 MiB of 1s; s2 = 512k of 2s over it and 64k of 3s at 2M; then the
  // active image has 4s at 3M and is grown to 8 MiB.
  void SetUp() override {
    LoopTest::SetUp();
    Qcow2CreateOptions opts;
    opts.filename = base_;
    opts.size = 4 << 20;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
    NodePtr node = open_file(/*read_only=*/false);
    ASSERT_TRUE(node);
    write(*node, 0, 1 << 20, 1);
    ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s1")));
    write(*node, 0, 512 << 10, 2);
    write(*node, 2 << 20, 64 << 10, 3);
    ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s2")));
    ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "1")));  // id 3, named like id 1
    write(*node, 3 << 20, 64 << 10, 4);
    ASSERT_OK(run_sync(*loop_, node->truncate(8 << 20)));
    close(*node);
  }
  NodePtr open_file(bool read_only) {
    OpenFlags flags;
    flags.read_only = read_only;
    return open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"file","filename":")" +
                    base_ + "\"}}",
                flags);
  }
  void write(BlockNode& node, uint64_t offset, uint64_t bytes, uint8_t byte) {
    std::vector<uint8_t> data(bytes, byte);
    ASSERT_OK(run_sync(*loop_, node.write(offset, IoVec(data.data(), data.size()))));
  }
  bool reads(BlockNode& node, uint64_t offset, uint64_t bytes, uint8_t byte) {
    std::vector<uint8_t> back(bytes);
    if (!run_sync(*loop_, node.read(offset, IoVec(back.data(), back.size())))) return false;
    return back == std::vector<uint8_t>(bytes, byte);
  }
  std::vector<char> file_bytes() {
    std::ifstream in(base_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  TempDir dir_;
  std::string base_ = dir_.file("base.qcow2");
};

TEST_F(Qcow2SnapshotLoadTmpTest, ReadsTheSnapshotAndKeepsTheSize) {
  const std::vector<char> before = file_bytes();
  NodePtr node = open_file(/*read_only=*/true);
  ASSERT_TRUE(node);
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*node, std::nullopt, std::string("s1"))));
  EXPECT_EQ(node->length(), uint64_t{8} << 20);
  EXPECT_TRUE(reads(*node, 0, 1 << 20, 1));
  EXPECT_TRUE(reads(*node, 1 << 20, 7 << 20, 0));
  // Another snapshot may be loaded over the first.
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*node, std::string("2"), std::nullopt)));
  EXPECT_TRUE(reads(*node, 0, 512 << 10, 2));
  EXPECT_TRUE(reads(*node, 512 << 10, 512 << 10, 1));
  EXPECT_TRUE(reads(*node, 2 << 20, 64 << 10, 3));
  EXPECT_TRUE(reads(*node, 3 << 20, 64 << 10, 0));
  Result<BlockStatus> st = run_sync(*loop_, node->block_status(3 << 20, 64 << 10, WantZero::kYes));
  ASSERT_OK(st);
  EXPECT_FALSE(st->flags & kStatusData);
  close(*node);
  EXPECT_EQ(file_bytes(), before);
}

TEST_F(Qcow2SnapshotLoadTmpTest, MatchesIdAndNameAsGiven) {
  NodePtr node = open_file(/*read_only=*/true);
  ASSERT_TRUE(node);
  // Both given: the same entry must have both.
  Status both = run_sync(*loop_, load_snapshot_tmp(*node, std::string("1"), std::string("s2")));
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().errnum(), ENOENT);
  EXPECT_EQ(both.error().message(), "Can't find snapshot");
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*node, std::string("3"), std::string("1"))));
  EXPECT_TRUE(reads(*node, 2 << 20, 64 << 10, 3));
  // By name "1": snapshot id 3, not id 1.
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*node, std::nullopt, std::string("1"))));
  EXPECT_TRUE(reads(*node, 0, 512 << 10, 2));
  // By id "1": s1.
  ASSERT_OK(run_sync(*loop_, load_snapshot_tmp(*node, std::string("1"), std::nullopt)));
  EXPECT_TRUE(reads(*node, 0, 512 << 10, 1));
  Status none = run_sync(*loop_, load_snapshot_tmp(*node, std::string("s1"), std::nullopt));
  EXPECT_FALSE(none);
  close(*node);
}

TEST_F(Qcow2SnapshotLoadTmpTest, Refusals) {
  NodePtr writable = open_file(/*read_only=*/false);
  ASSERT_TRUE(writable);
  Status w = run_sync(*loop_, load_snapshot_tmp(*writable, std::string("1"), std::nullopt));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().errnum(), EPERM);
  EXPECT_TRUE(reads(*writable, 3 << 20, 64 << 10, 4));  // still the active image
  close(*writable);

  OpenFlags flags;
  flags.read_only = true;
  NodePtr raw =
      open(R"({"driver":"raw","file":{"driver":"file","filename":")" + base_ + "\"}}", flags);
  ASSERT_TRUE(raw);
  Status r = run_sync(*loop_, load_snapshot_tmp(*raw, std::string("1"), std::nullopt));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().errnum(), ENOTSUP);
  EXPECT_EQ(r.error().message(),
            "Block format 'raw' used by device '' does not support temporarily loading internal "
            "snapshots");
  close(*raw);
}

}  // namespace
}  // namespace qblock::qcow2
