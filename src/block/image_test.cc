// The public image-level API (qblock/image.h) end to end on files: create, describe, copy,
// check. The pieces it forwards to have their own tests; these check the forwarding.
#include "qblock/image.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "block/test_util.h"
#include "qblock/block_backend.h"
#include "qblock/chain_status.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;

class ImageApiTest : public LoopTest {
 protected:
  std::string create(const std::string& name, uint64_t size) {
    Qcow2CreateOptions o;
    o.filename = dir_.file(name);
    o.size = size;
    EXPECT_OK(validate_qcow2_create_options(o));
    EXPECT_OK(run_sync(*loop_, create_qcow2_image(*loop_, o)));
    return o.filename;
  }
  std::unique_ptr<BlockBackend> open_image(const std::string& path, bool check = false,
                                           bool read_only = false) {
    BackendOptions o;
    o.filename = path;
    o.format = "qcow2";
    o.flags.check = check;
    o.flags.read_only = read_only;
    auto b = run_sync(*loop_, BlockBackend::open(*loop_, std::move(o)));
    EXPECT_TRUE(b) << (b ? "" : b.error().message());
    return b ? std::move(*b) : nullptr;
  }
  void close(BlockBackend& b) { EXPECT_OK(run_sync(*loop_, b.close())); }
  TempDir dir_;
};

TEST_F(ImageApiTest, CreatedImageIsDescribedFromItsHeader) {
  const std::string path = create("a.qcow2", 16 << 20);
  Result<ImageInfo> info = run_sync(*loop_, read_image_info(*loop_, path, ""));
  ASSERT_OK(info);
  EXPECT_EQ(info->format, "qcow2");
  EXPECT_EQ(info->virtual_size, 16u << 20);
  ASSERT_TRUE(info->qcow2.has_value());
  EXPECT_EQ(info->qcow2->version, 3u);
  EXPECT_EQ(info->qcow2->cluster_size, 65536u);
  EXPECT_EQ(info->qcow2->refcount_bits, 16u);
  EXPECT_FALSE(info->qcow2->dirty);
  EXPECT_FALSE(info->qcow2->corrupt);
  EXPECT_TRUE(info->qcow2->snapshots.empty());
  EXPECT_ERRNO(run_sync(*loop_, read_image_info(*loop_, path, "vmdk")), EINVAL);
  EXPECT_ERRNO(run_sync(*loop_, read_image_info(*loop_, dir_.file("missing"), "")), ENOENT);
}

TEST_F(ImageApiTest, InvalidCreateOptionsAreRefused) {
  Qcow2CreateOptions o;
  o.filename = dir_.file("bad.qcow2");
  o.size = 1 << 20;
  o.cluster_size = 1000;
  EXPECT_ERRNO(validate_qcow2_create_options(o), EINVAL);
}

TEST_F(ImageApiTest, CopyKeepsDataAndSparsenessAndCheckFindsNoErrors) {
  const uint64_t size = 8 << 20;
  const std::string from = create("from.qcow2", size);
  const std::string to = create("to.qcow2", size);
  std::unique_ptr<BlockBackend> source = open_image(from);
  ASSERT_NE(source, nullptr);
  std::vector<uint8_t> pattern(96 << 10, 0xa5);
  ASSERT_OK(run_sync(*loop_, source->write(3 << 20, IoVec(pattern.data(), pattern.size()))));
  std::unique_ptr<BlockBackend> target = open_image(to);
  ASSERT_NE(target, nullptr);
  CopyOptions options;
  options.target_is_zero = true;
  options.chunk_bytes = 64 << 10;  // several chunks for the data, in parallel
  ASSERT_OK(run_sync(*loop_, copy_image(*loop_, *source, *target, options)));

  std::vector<uint8_t> back(pattern.size(), 0);
  ASSERT_OK(run_sync(*loop_, target->read(3 << 20, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back, pattern);
  // The zero extent before the data was skipped, so it is still unallocated in the target.
  Result<ChainStatus> head = run_sync(*loop_, chain_status(&target->root(), 0, 1 << 20, {}));
  ASSERT_OK(head);
  EXPECT_FALSE(head->status.flags & kStatusAllocated);
  EXPECT_TRUE(head->status.flags & kStatusZero);
  close(*source);
  close(*target);

  std::unique_ptr<BlockBackend> checked = open_image(to, /*check=*/true, /*read_only=*/true);
  ASSERT_NE(checked, nullptr);
  Result<CheckResult> r = run_sync(*loop_, check_image(checked->root(), 0));
  ASSERT_OK(r);
  EXPECT_EQ(r->corruptions, 0u);
  EXPECT_EQ(r->leaks, 0u);
  EXPECT_GT(r->allocated_clusters, 0u);
  close(*checked);
}

TEST_F(ImageApiTest, CopyIntoASmallerTargetIsRefused) {
  std::unique_ptr<BlockBackend> source = open_image(create("big.qcow2", 4 << 20));
  std::unique_ptr<BlockBackend> target = open_image(create("small.qcow2", 1 << 20));
  ASSERT_NE(source, nullptr);
  ASSERT_NE(target, nullptr);
  EXPECT_ERRNO(run_sync(*loop_, copy_image(*loop_, *source, *target)), EINVAL);
  close(*source);
  close(*target);
}

}  // namespace
}  // namespace qblock
