// qcow2 images with an external data file (qcow2-format.md §10): where guest data and L2
// entries land, the open refusals, and a rewrite after a discard keeping its data.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "base/byte_order.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/subcluster.h"
#include "block/test_util.h"
#include "qblock/iovec.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

std::vector<uint8_t> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

class Qcow2DataFileTest : public LoopTest {
 protected:
  // A fresh 4 MiB image (64 KiB clusters) with data file d.raw.
  void create(bool raw = false, bool extended_l2 = false) {
    Qcow2CreateOptions opts;
    opts.filename = image_;
    opts.size = 4 << 20;
    opts.data_file = data_;
    opts.data_file_raw = raw;
    opts.extended_l2 = extended_l2;
    Status s = run_sync(*loop_, create_qcow2(*loop_, opts));
    ASSERT_TRUE(s) << s.error().message();
  }
  NodePtr open_image(const std::string& extra = "") {
    return open(R"({"driver":"qcow2","discard":"unmap","file":{"driver":"file","filename":")" +
                image_ + "\"}" + extra + "}");
  }
  Status write(BlockNode& node, uint64_t offset, std::size_t len, uint8_t byte) {
    AlignedBuffer buf(len);
    buf.fill(byte);
    return run_sync(*loop_, node.write(offset, IoVec(buf.data(), len)));
  }
  // The L2 entry of guest cluster `index` (the first L2 table); `word` 1 is the subcluster
  // bitmap of an extended entry.
  uint64_t l2_entry(uint64_t index, bool extended = false, uint64_t word = 0) {
    const std::vector<uint8_t> img = file_bytes(image_);
    const uint64_t l1 = load_be64(img.data() + 40);
    const uint64_t l2 = load_be64(img.data() + l1) & kOffsetMask;
    if (l2 == 0) return 0;
    return load_be64(img.data() + l2 + index * (extended ? 16 : 8) + word * 8);
  }
  TempDir dir_;
  std::string image_ = dir_.file("t.qcow2");
  std::string data_ = dir_.file("d.raw");
};

TEST_F(Qcow2DataFileTest, GuestDataGoesToTheDataFileAtTheGuestOffset) {
  create();
  const uint64_t image_size = file_bytes(image_).size();
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  ASSERT_OK(write(*node, 70 << 10, 4096, 0x11));
  ASSERT_OK(write(*node, 0, 512, 0x22));
  close(*node);
  const std::vector<uint8_t> data = file_bytes(data_);
  ASSERT_EQ(data.size(), 4u << 20);
  EXPECT_EQ(data[0], 0x22);
  EXPECT_EQ(data[511], 0x22);
  EXPECT_EQ(data[512], 0);  // the rest of cluster 0 written as zeros
  EXPECT_EQ(data[(70 << 10) - 1], 0);
  EXPECT_EQ(data[70 << 10], 0x11);
  EXPECT_EQ(data[(74 << 10) - 1], 0x11);
  EXPECT_EQ(data[74 << 10], 0);
  // §10: offset = guest offset with COPIED; guest cluster 0 is offset 0 with COPIED.
  EXPECT_EQ(l2_entry(0), kCopied);
  EXPECT_EQ(l2_entry(1), 0x10000 | kCopied);
  EXPECT_EQ(l2_entry(2), 0u);
  // Only the L2 table joined the metadata: no data cluster in the image file.
  EXPECT_EQ(file_bytes(image_).size(), std::max<uint64_t>(image_size, 0x50000));

  node = open_image();
  ASSERT_TRUE(node);
  AlignedBuffer back(128 << 10);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back.data()[0], 0x22);
  EXPECT_EQ(back.data()[512], 0);
  EXPECT_EQ(back.data()[70 << 10], 0x11);
  close(*node);
}

TEST_F(Qcow2DataFileTest, AClusterRewrittenAfterADiscardKeepsItsNewData) {
  create();
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  ASSERT_OK(write(*node, 64 << 10, 64 << 10, 0x33));
  ASSERT_OK(run_sync(*loop_, node->discard(64 << 10, 64 << 10)));
  ASSERT_OK(write(*node, 64 << 10, 4096, 0x44));
  close(*node);
  const std::vector<uint8_t> data = file_bytes(data_);
  EXPECT_EQ(data[64 << 10], 0x44);
  EXPECT_EQ(data[(68 << 10) - 1], 0x44);
  EXPECT_EQ(data[68 << 10], 0);  // the discarded cluster reads as zeros around the write
  EXPECT_EQ(l2_entry(1), 0x10000 | kCopied);
}

TEST_F(Qcow2DataFileTest, RawDataFileFollowsZeroWritesAndDiscards) {
  create(/*raw=*/true);
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  ASSERT_OK(write(*node, 0, 256 << 10, 0x55));
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 64 << 10, RequestFlags{})));
  ASSERT_OK(run_sync(*loop_, node->discard(128 << 10, 64 << 10)));
  close(*node);
  const std::vector<uint8_t> data = file_bytes(data_);
  EXPECT_EQ(data[0], 0);
  EXPECT_EQ(data[(64 << 10) - 1], 0);
  EXPECT_EQ(data[64 << 10], 0x55);
  EXPECT_EQ(data[128 << 10], 0);
  EXPECT_EQ(data[(192 << 10) - 1], 0);
  EXPECT_EQ(data[192 << 10], 0x55);
  // The raw bit stays across the read-write open.
  const std::vector<uint8_t> img = file_bytes(image_);
  EXPECT_EQ(load_be64(img.data() + 88), kAutoclearDataFileRaw);
}

TEST_F(Qcow2DataFileTest, ExtendedL2WritesWholeSubclustersAtTheGuestOffset) {
  // As qemu-io 7.2 (observed; golden 058): 64 KiB clusters, 2 KiB subclusters.
  create(/*raw=*/false, /*extended_l2=*/true);
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(0, 64 << 10, RequestFlags{})));
  ASSERT_OK(write(*node, 5 << 10, 1024, 0x11));    // half of subcluster 2 of cluster 0
  ASSERT_OK(write(*node, 130 << 10, 4096, 0x22));  // subclusters 1-2 of cluster 2
  ASSERT_OK(run_sync(*loop_, node->discard(192 << 10, 64 << 10)));  // nothing there
  ASSERT_OK(write(*node, 256 << 10, 64 << 10, 0x33));
  ASSERT_OK(run_sync(*loop_, node->discard(256 << 10, 64 << 10)));
  close(*node);
  // Cluster 0 at offset 0 with COPIED: subcluster 2 allocated, the others still zero.
  EXPECT_EQ(l2_entry(0, true), kCopied);
  EXPECT_EQ(l2_entry(0, true, 1), (kAllZeroBits & ~(uint64_t{1} << 34)) | 0x4);
  EXPECT_EQ(l2_entry(2, true), 0x20000 | kCopied);
  EXPECT_EQ(l2_entry(2, true, 1), 0x6u);
  EXPECT_EQ(l2_entry(3, true, 1), 0u);
  EXPECT_EQ(l2_entry(4, true), 0u);
  EXPECT_EQ(l2_entry(4, true, 1), kAllZeroBits);
  const std::vector<uint8_t> data = file_bytes(data_);
  EXPECT_EQ(data[(4 << 10) - 1], 0);
  EXPECT_EQ(data[5 << 10], 0x11);
  EXPECT_EQ(data[(6 << 10) - 1], 0x11);
  EXPECT_EQ(data[130 << 10], 0x22);
  EXPECT_EQ(data[(134 << 10) - 1], 0x22);

  node = open_image();
  ASSERT_TRUE(node);
  AlignedBuffer back(320 << 10);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  for (uint64_t i = 0; i < back.size(); ++i) {
    uint8_t want = 0;
    if (i >= (5 << 10) && i < (6 << 10)) want = 0x11;
    if (i >= (130 << 10) && i < (134 << 10)) want = 0x22;
    ASSERT_EQ(back.data()[i], want) << i;
  }
  close(*node);
}

TEST_F(Qcow2DataFileTest, ShrinkCutsTheDataFileAndClearsTheEntriesPastTheEnd) {
  // As qemu-img 7.2 resize --shrink (observed; golden 059).
  create();
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  ASSERT_OK(write(*node, 0, 1 << 20, 0x55));
  ASSERT_OK(run_sync(*loop_, node->truncate(300 << 10, PreallocMode::kOff)));
  EXPECT_EQ(node->length(), 300u << 10);
  close(*node);
  EXPECT_EQ(file_bytes(data_).size(), 300u << 10);
  EXPECT_EQ(l2_entry(4), 0x40000 | kCopied);  // the last, partial cluster stays
  EXPECT_EQ(l2_entry(5), 0u);
  node = open_image();
  ASSERT_TRUE(node);
  AlignedBuffer back(300 << 10);
  ASSERT_OK(run_sync(*loop_, node->read(0, IoVec(back.data(), back.size()))));
  EXPECT_EQ(back.data()[0], 0x55);
  EXPECT_EQ(back.data()[(300 << 10) - 1], 0x55);
  close(*node);
}

TEST_F(Qcow2DataFileTest, OpenRefusals) {
  create();
  // The data-file option names another file; the header's name is not used then.
  Result<NodePtr> missing = run_sync(
      *loop_, open_node(*loop_,
                        Options::parse(R"({"driver":"qcow2","file":{"driver":"file","filename":")" +
                                       image_ + R"("},"data-file":{"driver":"file","filename":")" +
                                       dir_.file("x") + "\"}}"),
                        OpenFlags{}, ""));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().message(),
            "Could not open '" + dir_.file("x") + "': No such file or directory");
  // An image without the bit refuses the option.
  Qcow2CreateOptions plain;
  plain.filename = dir_.file("p.qcow2");
  plain.size = 1 << 20;
  ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, plain)));
  Result<NodePtr> r = run_sync(
      *loop_,
      open_node(*loop_,
                Options::parse(R"({"driver":"qcow2","file":{"driver":"file","filename":")" +
                               plain.filename + R"("},"data-file":{"driver":"file","filename":")" +
                               data_ + "\"}}"),
                OpenFlags{}, ""));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "'data-file' can only be set for images with an external data file");
  // Compressed writes are refused.
  NodePtr node = open_image();
  ASSERT_TRUE(node);
  AlignedBuffer buf(64 << 10);
  buf.fill(1);
  Status s = run_sync(*loop_, node->write(0, IoVec(buf.data(), buf.size()),
                                          RequestFlags{RequestFlag::kWriteCompressed}));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), ENOTSUP);
  close(*node);
}

}  // namespace
}  // namespace qblock::qcow2
