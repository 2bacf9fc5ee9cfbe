// copy-on-read filter tests: reads copy backing data into the top image (data as data, zeros
// as zero clusters), `bottom` limits what is copied, flags are inherited, and the open errors
// are QEMU's.
#include "block/filters/copy_on_read.h"

#include <gtest/gtest.h>

#include "block/filters/filter_test_util.h"
#include "block/protocols/memory.h"
#include "qblock/chain_status.h"

namespace qblock {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;

class CopyOnReadTest : public testing::FilterTest {
 protected:
  // base.qcow2 (0x11 in [0, 256k), zeros written at [256k, 320k)) <- top.qcow2.
  void make_chain() {
    make_qcow2("base.qcow2", kMiB);
    NodePtr base = open_qcow2("base.qcow2");
    ASSERT_TRUE(base);
    ASSERT_OK(write(*base, 0, 256 * kKiB, 0x11));
    ASSERT_OK(run_sync(*loop_, base->write_zeroes(256 * kKiB, 64 * kKiB)));
    close(*base);
    make_qcow2("top.qcow2", kMiB, "base.qcow2");
  }
  std::string cor(const std::string& extra = "") {
    return R"({"driver":"copy-on-read",)" + extra +
           R"("file":{"driver":"qcow2","file":{"driver":"file","filename":")" +
           dir_.file("top.qcow2") + R"("}}})";
  }
};

TEST_F(CopyOnReadTest, ReadsCopyWholeClustersFromTheBackingFile) {
  make_chain();
  NodePtr root = open(cor());
  ASSERT_TRUE(root);
  BlockNode& top = *root->primary_child();
  EXPECT_TRUE(unallocated(top, 0, kMiB));
  // The same reads qemu-io makes in tests/iotests/018: afterwards qemu-img map of the top
  // shows [0, 64k) and [192k, 320k) allocated, and [896k, 960k) as a zero cluster.
  EXPECT_TRUE(all(read(*root, 4 * kKiB, 4 * kKiB), 0x11));
  std::vector<uint8_t> mid = read(*root, 200 * kKiB, 100 * kKiB);
  EXPECT_EQ(mid[0], 0x11);
  EXPECT_EQ(mid[56 * kKiB - 1], 0x11);
  EXPECT_EQ(mid[56 * kKiB], 0);
  EXPECT_TRUE(all(read(*root, 900 * kKiB, 10 * kKiB), 0));
  EXPECT_TRUE(allocated(top, 0, 64 * kKiB));
  EXPECT_TRUE(unallocated(top, 64 * kKiB, 128 * kKiB));
  EXPECT_TRUE(allocated(top, 192 * kKiB, 128 * kKiB));
  EXPECT_TRUE(unallocated(top, 320 * kKiB, 576 * kKiB));
  EXPECT_TRUE(allocated(top, 896 * kKiB, 64 * kKiB));
  close(*root);
  // The copies are in the top image alone: it reads the same without its backing file.
  NodePtr alone = open(R"({"driver":"qcow2","backing":null,"file":{"driver":"file",)"
                       R"("filename":")" +
                       dir_.file("top.qcow2") + R"("}})");
  ASSERT_TRUE(alone);
  EXPECT_TRUE(all(read(*alone, 0, 64 * kKiB), 0x11));
  EXPECT_TRUE(all(read(*alone, 192 * kKiB, 64 * kKiB), 0x11));
  EXPECT_TRUE(all(read(*alone, 64 * kKiB, 128 * kKiB), 0));
  close(*alone);
}

TEST_F(CopyOnReadTest, ReadsOfAllocatedDataAndWritesPassThrough) {
  make_chain();
  NodePtr root = open(cor());
  ASSERT_TRUE(root);
  ASSERT_OK(write(*root, 64 * kKiB, 4 * kKiB, 0x22));
  BlockNode& top = *root->primary_child();
  EXPECT_TRUE(allocated(top, 64 * kKiB, 64 * kKiB));
  std::vector<uint8_t> back = read(*root, 64 * kKiB, 64 * kKiB);
  EXPECT_EQ(back[0], 0x22);
  EXPECT_EQ(back[4 * kKiB], 0x11);
  EXPECT_TRUE(unallocated(top, 128 * kKiB, 64 * kKiB));
  close(*root);
}

TEST_F(CopyOnReadTest, BottomStopsTheCopyAtTheNamedNode) {
  // base (0x11 in [0, 64k)) <- mid (0x22 in [128k, 192k)) <- top; bottom=mid copies what mid
  // holds and leaves what only base holds in base.
  make_qcow2("base.qcow2", kMiB);
  NodePtr base = open_qcow2("base.qcow2");
  ASSERT_TRUE(base);
  ASSERT_OK(write(*base, 0, 64 * kKiB, 0x11));
  close(*base);
  make_qcow2("mid.qcow2", kMiB, "base.qcow2");
  NodePtr mid = open_qcow2("mid.qcow2");
  ASSERT_TRUE(mid);
  ASSERT_OK(write(*mid, 128 * kKiB, 64 * kKiB, 0x22));
  close(*mid);
  make_qcow2("top.qcow2", kMiB, "mid.qcow2");
  NodePtr root = open(R"({"driver":"copy-on-read","bottom":"m",)"
                      R"("file":{"driver":"qcow2","backing":{"driver":"qcow2","node-name":"m",)"
                      R"("file":{"driver":"file","filename":")" +
                      dir_.file("mid.qcow2") + R"("}},"file":{"driver":"file","filename":")" +
                      dir_.file("top.qcow2") + R"("}}})");
  ASSERT_TRUE(root);
  EXPECT_TRUE(all(read(*root, 128 * kKiB, 64 * kKiB), 0x22));
  EXPECT_TRUE(all(read(*root, 0, 64 * kKiB), 0x11));
  BlockNode& top = *root->primary_child();
  EXPECT_TRUE(unallocated(top, 0, 128 * kKiB));
  EXPECT_TRUE(allocated(top, 128 * kKiB, 64 * kKiB));
  EXPECT_TRUE(unallocated(top, 192 * kKiB, kMiB - 192 * kKiB));
  close(*root);
}

Task<Status> read_into(BlockNode& node, uint64_t offset, std::vector<uint8_t>* buf) {
  co_return co_await node.read(offset, IoVec(buf->data(), buf->size()));
}
Task<Status> write_from(BlockNode& node, uint64_t offset, std::vector<uint8_t>* buf) {
  co_return co_await node.write(offset, IoVec(buf->data(), buf->size()));
}

TEST_F(CopyOnReadTest, ACopyNeverOverwritesAConcurrentGuestWrite) {
  // top.qcow2 on an asynchronous memory node over an asynchronous backing node full of 0x11:
  // the copy of cluster 0 (a read at 0) and a guest write into the same cluster run at once.
  make_qcow2("top.qcow2", kMiB);
  NodePtr root = open(R"({"driver":"copy-on-read","file":{"driver":"qcow2","file":{"driver":)"
                      R"("memory","async":true,"efficient-zeroes":true,"image":")" +
                      dir_.file("top.qcow2") +
                      R"("},"backing":{"driver":"memory","size":1048576,"async":true}}})");
  ASSERT_TRUE(root);
  auto& backing = static_cast<MemoryNode&>(*root->primary_child()->child(ChildRole::kBacking));
  std::fill(backing.data().begin(), backing.data().end(), 0x11);
  std::vector<uint8_t> got(4 * kKiB);
  std::vector<uint8_t> data(4 * kKiB, 0x22);
  std::vector<Task<Status>> both;
  both.push_back(read_into(*root, 0, &got));
  both.push_back(write_from(*root, 4 * kKiB, &data));
  std::vector<Status> results = run_sync(*loop_, when_all(std::move(both)));
  ASSERT_OK(results[0]);
  ASSERT_OK(results[1]);
  EXPECT_TRUE(all(got, 0x11));
  EXPECT_TRUE(all(read(*root, 4 * kKiB, 4 * kKiB), 0x22));
  EXPECT_TRUE(all(read(*root, 0, 4 * kKiB), 0x11));
  EXPECT_TRUE(all(read(*root, 8 * kKiB, 56 * kKiB), 0x11));
  close(*root);
}

TEST_F(CopyOnReadTest, ChainStatusLooksThroughTheFilterIntoTheBackingFile) {
  // What the NBD server and qemu-img map ask: data from the backing file is data (layer 1),
  // not an undefined extent (which an export would serve as zeros without reading).
  make_chain();
  NodePtr root = open(cor());
  ASSERT_TRUE(root);
  Result<ChainStatus> st = run_sync(*loop_, chain_status(root.get(), 0, kMiB, {}));
  ASSERT_TRUE(st);
  EXPECT_TRUE(st->defined);
  EXPECT_EQ(st->layer, 1u);
  EXPECT_TRUE(st->status.flags & kStatusData);
  EXPECT_EQ(st->status.bytes, 256 * kKiB);
  close(*root);
}

TEST_F(CopyOnReadTest, InheritsTheFilesFlags) {
  NodePtr root = open(
      R"({"driver":"copy-on-read","file":{"driver":"memory","size":65536,"efficient-zeroes":true,"fua":true}})");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->supported_write_flags(), RequestFlag::kWriteUnchanged | RequestFlag::kFua);
  EXPECT_EQ(root->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged) |
                                              RequestFlag::kFua | RequestFlag::kMayUnmap |
                                              RequestFlag::kNoFallback);
  close(*root);
  NodePtr plain = open(R"({"driver":"copy-on-read","file":{"driver":"memory","size":65536}})");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->supported_write_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  EXPECT_EQ(plain->supported_zero_flags(), RequestFlags(RequestFlag::kWriteUnchanged));
  close(*plain);
}

TEST_F(CopyOnReadTest, OpenErrorsAreQemus) {
  make_chain();
  // Messages observed with qemu-io 7.2 (`qemu-io: can't open: <message>`).
  EXPECT_EQ(open_error(cor(R"("bottom":"nonexist",)")), "Bottom node 'nonexist' not found");
  OpenFlags ro;
  ro.read_only = true;
  EXPECT_EQ(open_error(cor(), ro), "Block node is read-only");
  EXPECT_EQ(open_error(R"({"driver":"copy-on-read"})"),
            "A block device must be specified for \"file\"");
  EXPECT_EQ(open_error(cor(R"("foo":"1",)")),
            "Block format 'copy-on-read' does not support the option 'foo'");
  NodePtr root = open(cor());
  ASSERT_TRUE(root);
  EXPECT_EQ(root->info().format_name, "copy-on-read");
  EXPECT_EQ(root->info().cluster_size, 64 * kKiB);
  close(*root);
}

}  // namespace
}  // namespace qblock
