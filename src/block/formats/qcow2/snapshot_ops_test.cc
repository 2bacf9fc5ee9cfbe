// Internal snapshot operations (snapshot_create.cc, snapshot_apply.cc, snapshot_delete.cc)
// through the public API (qblock/snapshot.h) on images held by the memory protocol: data read
// back after apply, clean checks (the project's and qemu-img's) after each operation, errors,
// and a walk whose cost follows the allocated L2 tables, not the virtual size.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/protocols/memory.h"
#include "block/test_util.h"
#include "qblock/snapshot.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

class Qcow2SnapshotOpsTest : public LoopTest {
 protected:
  void make_image(uint64_t size) {
    Qcow2CreateOptions opts;
    opts.filename = base_;
    opts.size = size;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  }
  // The qcow2 node over a memory copy of `path`.
  NodePtr open_memory(const std::string& path) {
    return open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"memory","image":")" + path +
                "\"}}");
  }
  static MemoryNode& memory(BlockNode& qcow2) {
    return static_cast<MemoryNode&>(*qcow2.primary_child());
  }
  // Writes the memory node's bytes to `path`.
  static void dump(BlockNode& qcow2, const std::string& path) {
    const std::vector<uint8_t>& data = memory(qcow2).data();
    std::ofstream(path, std::ios::binary | std::ios::trunc)
        .write(reinterpret_cast<const char*>(data.data()),
               static_cast<std::streamsize>(data.size()));
  }
  // The project's check of the image in `path`: corruptions + leaks (0 when clean).
  uint64_t problems(const std::string& path) {
    OpenFlags flags;
    flags.check = true;
    flags.read_only = true;
    NodePtr node =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path + "\"}}", flags);
    if (!node) return ~uint64_t{0};
    Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*node, 0));
    close(*node);
    if (!r) return ~uint64_t{0};
    return r->corruptions + r->leaks + r->check_errors;
  }
  // Both checks of the image `node` holds now.
  void expect_clean(BlockNode& node) {
    ASSERT_OK(run_sync(*loop_, node.flush()));
    const std::string path = dir_.file("dump.qcow2");
    dump(node, path);
    EXPECT_EQ(problems(path), 0u);
    if (std::system("qemu-img --version >/dev/null 2>&1") == 0) {
      EXPECT_EQ(std::system(("qemu-img check -q '" + path + "' >/dev/null 2>&1").c_str()), 0);
    }
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

  TempDir dir_;
  std::string base_ = dir_.file("base.qcow2");
};

TEST_F(Qcow2SnapshotOpsTest, CreateApplyDeleteKeepDataAndChecksClean) {
  make_image(64 << 20);
  NodePtr node = open_memory(base_);
  ASSERT_TRUE(node);
  write(*node, 0, 256 << 10, 1);
  write(*node, 8 << 20, 64 << 10, 1);
  ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s1")));
  expect_clean(*node);
  write(*node, 0, 128 << 10, 2);  // COW of shared clusters
  write(*node, 32 << 20, 64 << 10, 2);
  ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s2")));
  expect_clean(*node);

  Result<std::vector<SnapshotInfo>> list = run_sync(*loop_, list_snapshots(*node));
  ASSERT_OK(list);
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "1");
  EXPECT_EQ((*list)[1].id, "2");
  EXPECT_EQ((*list)[1].name, "s2");
  EXPECT_EQ((*list)[1].icount, std::optional<uint64_t>(0));

  ASSERT_OK(run_sync(*loop_, apply_snapshot(*node, "s1")));
  expect_clean(*node);
  EXPECT_TRUE(reads(*node, 0, 256 << 10, 1));
  EXPECT_TRUE(reads(*node, 32 << 20, 64 << 10, 0));
  write(*node, 0, 64 << 10, 3);  // the applied tree is shared with s1: COW again
  ASSERT_OK(run_sync(*loop_, apply_snapshot(*node, "2")));
  EXPECT_TRUE(reads(*node, 0, 128 << 10, 2));
  EXPECT_TRUE(reads(*node, 128 << 10, 128 << 10, 1));
  EXPECT_TRUE(reads(*node, 32 << 20, 64 << 10, 2));
  expect_clean(*node);

  ASSERT_OK(run_sync(*loop_, delete_snapshot(*node, "s1")));
  expect_clean(*node);
  ASSERT_OK(run_sync(*loop_, delete_snapshot(*node, "s2")));
  expect_clean(*node);
  EXPECT_TRUE(reads(*node, 0, 128 << 10, 2));
  list = run_sync(*loop_, list_snapshots(*node));
  ASSERT_OK(list);
  EXPECT_TRUE(list->empty());
  // Nothing is shared any more: writes go in place again.
  write(*node, 0, 64 << 10, 4);
  EXPECT_TRUE(reads(*node, 0, 64 << 10, 4));
  expect_clean(*node);
  close(*node);
}

TEST_F(Qcow2SnapshotOpsTest, ApplyRestoresTheSnapshotsVirtualSize) {
  make_image(64 << 20);
  NodePtr node = open_memory(base_);
  ASSERT_TRUE(node);
  write(*node, 0, 64 << 10, 5);
  ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "small")));
  ASSERT_OK(run_sync(*loop_, node->truncate(1 << 30, PreallocMode::kOff)));
  write(*node, 900 << 20, 64 << 10, 6);
  ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "big")));
  ASSERT_OK(run_sync(*loop_, apply_snapshot(*node, "small")));
  EXPECT_EQ(node->length(), uint64_t{64} << 20);
  EXPECT_TRUE(reads(*node, 0, 64 << 10, 5));
  expect_clean(*node);
  ASSERT_OK(run_sync(*loop_, apply_snapshot(*node, "big")));
  EXPECT_EQ(node->length(), uint64_t{1} << 30);
  EXPECT_TRUE(reads(*node, 900 << 20, 64 << 10, 6));
  expect_clean(*node);
  close(*node);
}

TEST_F(Qcow2SnapshotOpsTest, MissingSnapshotsAndFormatsWithoutSnapshots) {
  make_image(16 << 20);
  NodePtr node = open_memory(base_);
  ASSERT_TRUE(node);
  EXPECT_ERRNO(run_sync(*loop_, apply_snapshot(*node, "nope")), ENOENT);
  EXPECT_ERRNO(run_sync(*loop_, delete_snapshot(*node, "nope")), ENOENT);
  close(*node);
  NodePtr raw = open(R"({"driver":"raw","file":{"driver":"memory","size":1048576}})");
  ASSERT_TRUE(raw);
  EXPECT_ERRNO(run_sync(*loop_, create_snapshot(*raw, "x")), ENOTSUP);
  EXPECT_ERRNO(run_sync(*loop_, list_snapshots(*raw)), ENOTSUP);
  close(*raw);
}

TEST_F(Qcow2SnapshotOpsTest, ReadOnlyImagesRefuse) {
  make_image(16 << 20);
  OpenFlags flags;
  flags.read_only = true;
  NodePtr node =
      open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + base_ + "\"}}", flags);
  ASSERT_TRUE(node);
  EXPECT_ERRNO(run_sync(*loop_, create_snapshot(*node, "x")), EROFS);
  close(*node);
}

// The walk reads the allocated L2 tables only: a 64 TiB image with two of them costs a
// handful of reads, not one per L1 entry.
TEST_F(Qcow2SnapshotOpsTest, CostFollowsAllocatedTablesNotVirtualSize) {
  make_image(uint64_t{64} << 40);
  NodePtr node = open_memory(base_);
  ASSERT_TRUE(node);
  write(*node, 0, 64 << 10, 7);
  write(*node, uint64_t{40} << 40, 64 << 10, 8);
  ASSERT_OK(run_sync(*loop_, node->flush()));
  memory(*node).clear_log();
  ASSERT_OK(run_sync(*loop_, create_snapshot(*node, "s")));
  EXPECT_LT(memory(*node).log().size(), 60u);
  memory(*node).clear_log();
  ASSERT_OK(run_sync(*loop_, delete_snapshot(*node, "s")));
  EXPECT_LT(memory(*node).log().size(), 60u);
  EXPECT_TRUE(reads(*node, uint64_t{40} << 40, 64 << 10, 8));
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
