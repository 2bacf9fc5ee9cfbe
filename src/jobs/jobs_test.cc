// The block jobs of qblock/jobs.h on qcow2 chains in files: commit (into the backing file and
// further down, emptying the top), rebase (safe copy and header), the header rewrite and the
// emptying, each judged by reading back and by check_image.
#include "qblock/jobs.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "qblock/image.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;

class JobsTest : public LoopTest {
 protected:
  // A qcow2 image of `size` bytes over `backing` (a name relative to dir_; empty: none).
  std::string create(const std::string& name, uint64_t size, const std::string& backing = "") {
    Qcow2CreateOptions o;
    o.filename = dir_.file(name);
    o.size = size;
    o.backing_file = backing;
    o.backing_fmt = backing.empty() ? "" : "qcow2";
    EXPECT_OK(run_sync(*loop_, create_qcow2_image(*loop_, o)));
    return o.filename;
  }
  std::unique_ptr<BlockBackend> open(const std::string& path, bool read_only = false,
                                     bool check = false) {
    BackendOptions o;
    o.filename = path;
    o.format = "qcow2";
    o.flags.read_only = read_only;
    o.flags.check = check;
    auto b = run_sync(*loop_, BlockBackend::open(*loop_, std::move(o)));
    EXPECT_TRUE(b) << (b ? "" : b.error().message());
    return b ? std::move(*b) : nullptr;
  }
  void write(const std::string& path, uint64_t offset, uint64_t bytes, uint8_t byte) {
    std::unique_ptr<BlockBackend> b = open(path);
    ASSERT_NE(b, nullptr);
    std::vector<uint8_t> data(bytes, byte);
    ASSERT_OK(run_sync(*loop_, b->write(offset, IoVec(data.data(), data.size()))));
    ASSERT_OK(run_sync(*loop_, b->close()));
  }
  // Whether [offset, offset + bytes) of `path` (through its chain) reads as `byte`.
  bool reads_as(const std::string& path, uint64_t offset, uint64_t bytes, uint8_t byte) {
    std::unique_ptr<BlockBackend> b = open(path, /*read_only=*/true);
    if (!b) return false;
    std::vector<uint8_t> data(bytes, static_cast<uint8_t>(~byte));
    Status s = run_sync(*loop_, b->read(offset, IoVec(data.data(), data.size())));
    EXPECT_OK(run_sync(*loop_, b->close()));
    return s && data == std::vector<uint8_t>(bytes, byte);
  }
  void expect_clean(const std::string& path) {
    std::unique_ptr<BlockBackend> b = open(path, /*read_only=*/true, /*check=*/true);
    ASSERT_NE(b, nullptr);
    Result<CheckResult> r = run_sync(*loop_, check_image(b->root(), 0));
    ASSERT_OK(r);
    EXPECT_EQ(r->corruptions, 0u) << path;
    EXPECT_EQ(r->leaks, 0u) << path;
    EXPECT_OK(run_sync(*loop_, b->close()));
  }
  std::string backing_of(const std::string& path) {
    Result<ImageInfo> info = run_sync(*loop_, read_image_info(*loop_, path, "qcow2"));
    EXPECT_TRUE(info && info->qcow2);
    return info && info->qcow2 ? info->qcow2->backing_file : "?";
  }
  TempDir dir_;
};

TEST_F(JobsTest, CommitCopiesTheTopIntoItsBackingFileAndEmptiesIt) {
  const std::string base = create("base.qcow2", 4 << 20);
  write(base, 0, 1 << 20, 1);
  const std::string top = create("top.qcow2", 4 << 20, "base.qcow2");
  write(top, 512 << 10, 1 << 20, 3);
  std::unique_ptr<BlockBackend> t = open(top);
  ASSERT_NE(t, nullptr);
  CommitOptions options;
  options.empty_top = true;
  uint64_t last = 0;
  options.progress = [&last](uint64_t done, uint64_t) { last = done; };
  ASSERT_OK(run_sync(*loop_, commit_image(*loop_, *t, options)));
  EXPECT_EQ(last, 4u << 20);
  ASSERT_OK(run_sync(*loop_, t->close()));
  // The base has the top's data; the emptied top shows it through.
  EXPECT_TRUE(reads_as(base, 0, 512 << 10, 1));
  EXPECT_TRUE(reads_as(base, 512 << 10, 1 << 20, 3));
  EXPECT_TRUE(reads_as(base, 1536 << 10, 512 << 10, 0));
  EXPECT_TRUE(reads_as(top, 512 << 10, 1 << 20, 3));
  expect_clean(base);
  expect_clean(top);
  // The emptied top is a fresh image: header, refcount table and block, L1 table.
  Result<ImageInfo> info = run_sync(*loop_, read_image_info(*loop_, top, "qcow2"));
  ASSERT_OK(info);
  EXPECT_EQ(info->file_length, 4u * 65536);
}

TEST_F(JobsTest, CommitIntoAnImageFurtherDownKeepsTheImagesInBetween) {
  const std::string base = create("base.qcow2", 4 << 20);
  const std::string mid = create("mid.qcow2", 4 << 20, "base.qcow2");
  write(mid, 0, 64 << 10, 2);
  const std::string top = create("top.qcow2", 4 << 20, "mid.qcow2");
  write(top, 1 << 20, 64 << 10, 3);
  std::unique_ptr<BlockBackend> t = open(top);
  ASSERT_NE(t, nullptr);
  CommitOptions options;
  options.base_depth = 2;
  ASSERT_OK(run_sync(*loop_, commit_image(*loop_, *t, options)));
  ASSERT_OK(run_sync(*loop_, t->close()));
  EXPECT_TRUE(reads_as(base, 0, 64 << 10, 2));
  EXPECT_TRUE(reads_as(base, 1 << 20, 64 << 10, 3));
  EXPECT_TRUE(reads_as(top, 1 << 20, 64 << 10, 3));
  expect_clean(base);
}

TEST_F(JobsTest, CommitWithoutBackingFileIsRefused) {
  std::unique_ptr<BlockBackend> t = open(create("alone.qcow2", 1 << 20));
  ASSERT_NE(t, nullptr);
  EXPECT_ERRNO(run_sync(*loop_, commit_image(*loop_, *t, {})), EINVAL);
  ASSERT_OK(run_sync(*loop_, t->close()));
}

TEST_F(JobsTest, RebaseCopiesWhatDiffersAndRewritesTheHeader) {
  const std::string old_base = create("old.qcow2", 4 << 20);
  write(old_base, 0, 1 << 20, 1);
  const std::string new_base = create("new.qcow2", 4 << 20);
  write(new_base, 512 << 10, 1 << 20, 1);
  const std::string top = create("top.qcow2", 4 << 20, "old.qcow2");
  std::unique_ptr<BlockBackend> t = open(top);
  std::unique_ptr<BlockBackend> n = open(new_base, /*read_only=*/true);
  ASSERT_NE(t, nullptr);
  ASSERT_NE(n, nullptr);
  RebaseOptions options;
  options.backing_file = "new.qcow2";
  options.backing_format = "qcow2";
  options.new_backing = n.get();
  ASSERT_OK(run_sync(*loop_, rebase_image(*t, options)));
  ASSERT_OK(run_sync(*loop_, n->close()));
  ASSERT_OK(run_sync(*loop_, t->close()));
  EXPECT_EQ(backing_of(top), "new.qcow2");
  // What the old chain showed is kept: ones in [0, 1M), zeros from 1M.
  EXPECT_TRUE(reads_as(top, 0, 1 << 20, 1));
  EXPECT_TRUE(reads_as(top, 1 << 20, 3 << 20, 0));
  expect_clean(top);
}

TEST_F(JobsTest, ChangeBackingFileToNoneAndBack) {
  create("base.qcow2", 1 << 20);
  const std::string top = create("top.qcow2", 1 << 20, "base.qcow2");
  std::unique_ptr<BlockBackend> t = open(top);
  ASSERT_NE(t, nullptr);
  ASSERT_OK(run_sync(*loop_, change_backing_file(t->root(), "", "")));
  ASSERT_OK(run_sync(*loop_, t->close()));
  EXPECT_EQ(backing_of(top), "");
  t = open(top);
  ASSERT_NE(t, nullptr);
  ASSERT_OK(run_sync(*loop_, change_backing_file(t->root(), "base.qcow2", "qcow2")));
  EXPECT_ERRNO(run_sync(*loop_, change_backing_file(t->root(), std::string(1024, 'x'), "qcow2")),
               EINVAL);
  ASSERT_OK(run_sync(*loop_, t->close()));
  EXPECT_EQ(backing_of(top), "base.qcow2");
  expect_clean(top);
  Result<ImageInfo> info = run_sync(*loop_, read_image_info(*loop_, top, "qcow2"));
  ASSERT_OK(info);
  EXPECT_EQ(info->qcow2->backing_format, "qcow2");
}
}  // namespace
}  // namespace qblock
