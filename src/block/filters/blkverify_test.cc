// blkverify tests: writes reach both children, reads are compared (contents and results) with
// QEMU's messages, only WRITE_UNCHANGED is advertised, and the open errors are QEMU's.
#include "block/filters/blkverify.h"

#include <gtest/gtest.h>

#include "block/filters/filter_test_util.h"
#include "block/protocols/memory.h"

namespace qblock {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

class BlkverifyTest : public testing::FilterTest {
 protected:
  // blkverify over test = qcow2 t.qcow2 and raw = memory (1 MiB).
  NodePtr open_verify(const std::string& raw_extra = "") {
    make_qcow2("t.qcow2", kMiB);
    NodePtr root = open(R"({"driver":"blkverify","test":{"driver":"qcow2","file":{"driver":)"
                        R"("file","filename":")" +
                        dir_.file("t.qcow2") +
                        R"("}},"raw":{"driver":"raw","file":{"driver":"memory","size":1048576)" +
                        raw_extra + "}}}");
    if (root) {
      static_cast<BlkverifyFilter&>(*root).set_mismatch_handler(
          [this](const std::string& m) { messages_.push_back(m); });
    }
    return root;
  }
  static MemoryNode& raw_memory(BlockNode& root) {
    return static_cast<MemoryNode&>(*root.child(ChildRole::kRaw)->primary_child());
  }
  std::vector<std::string> messages_;
};

TEST_F(BlkverifyTest, WritesGoToBothAndReadsAreCompared) {
  NodePtr root = open_verify();
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 0, 64 * kKiB, 0x11));
  ASSERT_OK(run_sync(*loop_, root->write_zeroes(4 * kKiB, 4 * kKiB)));
  EXPECT_TRUE(all(read(*root, 0, 4 * kKiB), 0x11));
  EXPECT_TRUE(all(read(*root, 4 * kKiB, 4 * kKiB), 0));
  EXPECT_EQ(raw_memory(*root).data()[0], 0x11);
  EXPECT_EQ(raw_memory(*root).data()[4 * kKiB], 0);
  EXPECT_TRUE(allocated(*root->child(ChildRole::kTest), 0, 64 * kKiB));
  EXPECT_TRUE(messages_.empty());
  // A byte changed behind the filter's back in the raw child.
  raw_memory(*root).data()[1000] = 0x22;
  EXPECT_FALSE(try_read(*root, 0, 4 * kKiB));
  EXPECT_FALSE(try_read(*root, 512, 2048));
  EXPECT_TRUE(try_read(*root, 2048, 2048));
  EXPECT_EQ(messages_, (std::vector<std::string>{
                           "blkverify: read offset=0 bytes=4096 contents mismatch at offset 1000",
                           "blkverify: read offset=512 bytes=2048 contents mismatch at offset 1000",
                       }));
  close(*root);
}

TEST_F(BlkverifyTest, DifferentResultsAreAMismatch) {
  make_qcow2("t.qcow2", kMiB);
  // The raw child fails every read with EIO (blkdebug), the test child succeeds.
  NodePtr root = open(R"({"driver":"blkverify","test":{"driver":"qcow2","file":{"driver":)"
                      R"("file","filename":")" +
                      dir_.file("t.qcow2") +
                      R"("}},"raw":{"driver":"raw","file":{"driver":"blkdebug","image":{)"
                      R"("driver":"memory","size":1048576},"inject-error":[{"event":"read_aio",)"
                      R"("errno":"5"}]}}})");
  ASSERT_TRUE(root);
  static_cast<BlkverifyFilter&>(*root).set_mismatch_handler(
      [this](const std::string& m) { messages_.push_back(m); });
  EXPECT_FALSE(try_read(*root, 0, 4 * kKiB));
  EXPECT_EQ(messages_, (std::vector<std::string>{
                           "blkverify: read offset=0 bytes=4096 return value mismatch 0 != -5"}));
  close(*root);
}

TEST_F(BlkverifyTest, AdvertisesOnlyWriteUnchanged) {
  NodePtr root = open_verify(R"(,"efficient-zeroes":true,"fua":true)");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->supported_write_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  EXPECT_EQ(root->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  // block-semantics.md §1.3: `write -z -n` through blkverify is "Operation not supported".
  Status nofb = run_sync(*loop_, root->write_zeroes(0, 64 * kKiB, RequestFlag::kNoFallback));
  ASSERT_FALSE(nofb);
  EXPECT_EQ(nofb.error().errnum(), ENOTSUP);
  NodeInfo info = root->info();
  EXPECT_EQ(info.format_name, "blkverify");
  EXPECT_EQ(info.protocol_name, "blkverify");
  EXPECT_EQ(root->length(), kMiB);
  close(*root);
}

TEST_F(BlkverifyTest, OpenErrorsAreQemus) {
  make_qcow2("t.qcow2", kMiB);
  EXPECT_EQ(open_error(R"({"driver":"blkverify","test":{"driver":"memory","size":512}})"),
            "A block device must be specified for \"raw\"");
  EXPECT_EQ(open_error(R"({"driver":"blkverify","raw":{"driver":"memory","size":512}})"),
            "A block device must be specified for \"test\"");
  EXPECT_EQ(open_error(R"({"driver":"blkverify","raw":{"driver":"memory","size":512},)"
                       R"("test":{"filename":")" +
                       dir_.file("t.qcow2") + R"("}})"),
            "Must specify either driver or file");
  EXPECT_EQ(open_error(R"({"driver":"blkverify","x":1,"raw":{"driver":"memory","size":512},)"
                       R"("test":{"driver":"memory","size":512}})"),
            "Block protocol 'blkverify' doesn't support the option 'x'");
  // A raw child given by file name alone has its format probed.
  EXPECT_EQ(open_error(R"({"driver":"blkverify","raw":{"filename":")" + dir_.file("t.qcow2") +
                       R"("},"test":{"driver":"memory","size":1048576}})"),
            "(opened)");
}

}  // namespace
}  // namespace qblock
