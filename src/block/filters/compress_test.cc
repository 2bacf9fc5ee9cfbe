// compress filter tests: every write reaches qcow2 as a compressed write of whole clusters
// (partial clusters padded), an allocated cluster is not compressed twice, the flags and the
// open errors are QEMU's.
#include "block/filters/compress.h"

#include <gtest/gtest.h>

#include "block/filters/filter_test_util.h"

namespace qblock {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

class CompressTest : public testing::FilterTest {
 protected:
  std::string graph(const std::string& name) {
    return R"({"driver":"compress","file":{"driver":"qcow2","file":{"driver":"file",)"
           R"("filename":")" +
           dir_.file(name) + R"("}}})";
  }
};

TEST_F(CompressTest, WritesAreCompressedWholeClusters) {
  make_qcow2("t.qcow2", kMiB);
  NodePtr root = open(graph("t.qcow2"));
  ASSERT_TRUE(root);
  EXPECT_EQ(root->limits().request_alignment, 64 * kKiB);
  ASSERT_OK(write(*root, 0, 64 * kKiB, 0x11));
  // A partial cluster is padded to the whole cluster (zeros around it here).
  ASSERT_OK(write(*root, 64 * kKiB, 4 * kKiB, 0x22));
  EXPECT_TRUE(all(read(*root, 0, 64 * kKiB), 0x11));
  std::vector<uint8_t> second = read(*root, 64 * kKiB, 64 * kKiB);
  EXPECT_EQ(second[0], 0x22);
  EXPECT_EQ(second[4 * kKiB], 0);
  // QEMU: "write failed: Input/output error" for a second write into a compressed cluster.
  Status again = write(*root, 0, 64 * kKiB, 0x33);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().errnum(), EIO);
  // Unaligned NO_FALLBACK write-zeroes fail (block-semantics.md §1.3); aligned ones pass.
  Status nofb =
      run_sync(*loop_, root->write_zeroes(192 * kKiB, 4 * kKiB, RequestFlag::kNoFallback));
  ASSERT_FALSE(nofb);
  EXPECT_EQ(nofb.error().errnum(), ENOTSUP);
  ASSERT_OK(run_sync(*loop_, root->write_zeroes(256 * kKiB, 64 * kKiB, RequestFlag::kNoFallback)));
  close(*root);
  // The clusters are stored compressed: qcow2 reports them as data without a host offset.
  NodePtr plain = open_qcow2("t.qcow2");
  ASSERT_TRUE(plain);
  for (uint64_t off : {uint64_t{0}, 64 * kKiB}) {
    Result<BlockStatus> st = run_sync(*loop_, plain->block_status(off, 64 * kKiB, WantZero::kYes));
    ASSERT_TRUE(st);
    EXPECT_EQ(st->bytes, 64 * kKiB);
    EXPECT_TRUE(st->flags & kStatusData);
    EXPECT_FALSE(st->flags & kStatusOffsetValid);
  }
  close(*plain);
}

TEST_F(CompressTest, InheritsTheFlagsOfQcow2) {
  make_qcow2("t.qcow2", kMiB);
  NodePtr root = open(graph("t.qcow2"));
  ASSERT_TRUE(root);
  BlockNode& q = *root->primary_child();
  EXPECT_EQ(root->supported_write_flags(),
            RequestFlags(RequestFlag::kWriteUnchanged) |
                (q.supported_write_flags() & RequestFlags(RequestFlag::kFua)));
  EXPECT_EQ(root->supported_zero_flags(),
            RequestFlags(RequestFlag::kWriteUnchanged) |
                (q.supported_zero_flags() & (RequestFlags(RequestFlag::kFua) |
                                             RequestFlag::kMayUnmap | RequestFlag::kNoFallback)));
  EXPECT_TRUE(root->supported_zero_flags().has(RequestFlag::kNoFallback));
  EXPECT_EQ(root->info().format_name, "compress");
  EXPECT_EQ(root->info().cluster_size, 64 * kKiB);
  close(*root);
}

TEST_F(CompressTest, OpenErrorsAreQemus) {
  EXPECT_EQ(open_error(R"({"driver":"compress","file":{"driver":"memory","size":65536}})"),
            "Compression is not supported for underlying format: memory");
  EXPECT_EQ(
      open_error(
          R"({"driver":"compress","file":{"driver":"raw","file":{"driver":"memory","size":65536}}})"),
      "Compression is not supported for underlying format: raw");
  make_qcow2("odd.qcow2", 1000 * kKiB);
  EXPECT_EQ(open_error(graph("odd.qcow2")),
            "Cannot get 'write' permission without 'resize': Image size is not a multiple of "
            "request alignment");
  OpenFlags ro;
  ro.read_only = true;
  EXPECT_EQ(open_error(graph("odd.qcow2"), ro), "(opened)");
  EXPECT_EQ(open_error(R"({"driver":"compress"})"),
            "A block device must be specified for \"file\"");
}

}  // namespace
}  // namespace qblock
