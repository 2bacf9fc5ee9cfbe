// Persistent dirty bitmaps kept by the qcow2 driver (bitmap_store.cc) through the public API
// (qblock/dirty_bitmaps.h): IN_USE while a writer has the image open, bits set by writes,
// write-zeroes and discards and stored at close, an unclean close leaving them inconsistent,
// removal, and damaged tables refused at open with QEMU's message.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "base/byte_order.h"
#include "block/dirty_bitmap.h"
#include "block/formats/qcow2/bitmaps.h"
#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/test_util.h"
#include "qblock/dirty_bitmaps.h"

namespace qblock::qcow2 {
namespace {

using testing::LoopTest;
using testing::TempDir;

class Qcow2BitmapTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    Qcow2CreateOptions opts;
    opts.filename = path_;
    opts.size = 64 << 20;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, opts)));
  }
  NodePtr open_image(bool read_only = false) {
    OpenFlags flags;
    flags.read_only = read_only;
    flags.discard = DiscardMode::kUnmap;  // discards reach the driver (and the bitmaps)
    return open(R"({"driver":"qcow2","prealloc":false,"file":{"driver":"file","filename":")" +
                    path_ + "\"}}",
                flags);
  }
  // The bitmap directory as the file holds it now (read beside any open writer).
  BitmapDirectory directory() {
    OpenFlags flags;
    flags.read_only = true;
    flags.force_share = true;
    NodePtr file = open(R"({"driver":"file","filename":")" + path_ + "\"}", flags);
    std::vector<uint8_t> raw(65536);
    EXPECT_OK(run_sync(*loop_, file->read(0, IoVec(raw.data(), raw.size()))));
    Result<Header> h = parse_header(raw.data(), raw.size(), SnapshotTableLimits::kRefuse);
    EXPECT_TRUE(h.has_value());
    Result<BitmapDirectory> dir = run_sync(*loop_, read_bitmap_directory(*file, *h));
    EXPECT_TRUE(dir.has_value());
    close(*file);
    return dir ? *dir : BitmapDirectory{};
  }
  uint64_t problems() {
    OpenFlags flags;
    flags.check = true;
    flags.read_only = true;
    NodePtr node =
        open(R"({"driver":"qcow2","file":{"driver":"file","filename":")" + path_ + "\"}}", flags);
    Result<CheckResult> r = run_sync(*loop_, check_qcow2_node(*node, 0));
    close(*node);
    return r ? r->corruptions + r->leaks + r->check_errors : ~uint64_t{0};
  }
  void write(BlockNode& node, uint64_t offset, uint64_t bytes) {
    std::vector<uint8_t> data(bytes, 0x5a);
    ASSERT_OK(run_sync(*loop_, node.write(offset, IoVec(data.data(), data.size()))));
  }
  static uint64_t count(BlockNode& node, const std::string& name) {
    for (const DirtyBitmapInfo& b : dirty_bitmaps(node)) {
      if (b.name == name) return b.count;
    }
    return ~uint64_t{0};
  }

  TempDir dir_;
  std::string path_ = dir_.file("b.qcow2");
};

TEST_F(Qcow2BitmapTest, WritesAreRecordedStoredAndReloaded) {
  NodePtr node = open_image();
  ASSERT_OK(add_dirty_bitmap(*node, "b0", std::nullopt, BitmapPersistence::kPersistent,
                             BitmapRecording::kEnabled));
  ASSERT_OK(add_dirty_bitmap(*node, "big", 1 << 20, BitmapPersistence::kPersistent,
                             BitmapRecording::kEnabled));
  ASSERT_OK(add_dirty_bitmap(*node, "off", std::nullopt, BitmapPersistence::kPersistent,
                             BitmapRecording::kDisabled));
  ASSERT_OK(add_dirty_bitmap(*node, "tmp", std::nullopt, BitmapPersistence::kTransient,
                             BitmapRecording::kEnabled));
  write(*node, 4096, 4096);
  ASSERT_OK(run_sync(*loop_, node->write_zeroes(8 << 20, 128 << 10)));
  ASSERT_OK(run_sync(*loop_, node->discard(16 << 20, 64 << 10)));
  EXPECT_EQ(count(*node, "b0"), (64u + 128 + 64) << 10);
  EXPECT_EQ(count(*node, "big"), 3u << 20);
  EXPECT_EQ(count(*node, "off"), 0u);
  close(*node);

  const BitmapDirectory dir = directory();
  ASSERT_EQ(dir.bitmaps.size(), 3u);  // the transient one is not stored
  for (const Bitmap& b : dir.bitmaps) EXPECT_EQ(b.flags & kBitmapInUse, 0u) << b.name;
  EXPECT_EQ(problems(), 0u);

  node = open_image(true);
  EXPECT_EQ(count(*node, "b0"), (64u + 128 + 64) << 10);
  EXPECT_EQ(count(*node, "big"), 3u << 20);
  Result<std::vector<std::pair<uint64_t, bool>>> runs =
      dirty_bitmap_extents(*node, "b0", 0, 16 << 20);
  ASSERT_TRUE(runs.has_value());
  const std::vector<std::pair<uint64_t, bool>> expected = {{64 << 10, true},
                                                           {(8 << 20) - (64 << 10), false},
                                                           {128 << 10, true},
                                                           {(8 << 20) - (128 << 10), false}};
  EXPECT_EQ(*runs, expected);
  close(*node);
}

// A bitmap a job froze (freeze_dirty_bitmap): busy for every other operation, the writes
// kept apart and listed as an unnamed successor, both stored if the image closes meanwhile;
// thawing reclaims or abdicates (the bitmap then listed as the newest).
TEST_F(Qcow2BitmapTest, FrozenBitmapKeepsItsBitsAndTheWritesApart) {
  NodePtr node = open_image();
  for (const char* name : {"a", "b"}) {
    ASSERT_OK(add_dirty_bitmap(*node, name, std::nullopt, BitmapPersistence::kPersistent,
                               BitmapRecording::kEnabled));
  }
  write(*node, 0, 4096);
  Result<const DirtyBitmap*> frozen = freeze_dirty_bitmap(*node, "a", true);
  ASSERT_TRUE(frozen.has_value());
  EXPECT_EQ((*frozen)->dirty_bytes(), 64u << 10);
  const std::string busy = "Bitmap 'a' is currently in use by another operation and cannot be used";
  EXPECT_EQ(freeze_dirty_bitmap(*node, "a", false).error().message(), busy);
  EXPECT_EQ(clear_dirty_bitmap(*node, "a").error().message(), busy);
  EXPECT_EQ(disable_dirty_bitmap(*node, "a").error().message(), busy);
  EXPECT_EQ(merge_dirty_bitmap(*node, "b", *node, "a").error().message(), busy);
  EXPECT_EQ(run_sync(*loop_, remove_dirty_bitmap(*node, "a")).error().message(), busy);
  ASSERT_TRUE(dirty_bitmap_extents(*node, "a", 0, 1 << 20).has_value());  // reading is fine
  write(*node, 1 << 20, 4096);
  EXPECT_EQ((*frozen)->dirty_bytes(), 64u << 10);
  std::vector<DirtyBitmapInfo> list = dirty_bitmaps(*node);
  ASSERT_EQ(list.size(), 3u);
  EXPECT_TRUE(list[0].busy);
  EXPECT_EQ(list[0].count, 64u << 10);
  EXPECT_EQ(list[1].count, 128u << 10);  // "b" recorded both writes
  EXPECT_EQ(list[2].name, "");           // the successor
  EXPECT_EQ(list[2].count, 64u << 10);
  EXPECT_TRUE(list[2].recording);

  // Reclaim: the frozen bits and the writes.
  thaw_dirty_bitmap(*node, "a", BitmapThaw::kReclaim);
  EXPECT_EQ(count(*node, "a"), 128u << 10);
  EXPECT_EQ(dirty_bitmaps(*node).size(), 2u);

  // Abdicate with what was not copied: only the writes since the freeze and `also_dirty`;
  // "a" is now the newest bitmap.
  ASSERT_TRUE(freeze_dirty_bitmap(*node, "a", true).has_value());
  write(*node, 2 << 20, 4096);
  DirtyBitmap not_copied(node->length(), 1 << 20);
  not_copied.set(4 << 20, 1);
  thaw_dirty_bitmap(*node, "a", BitmapThaw::kAbdicate, &not_copied);
  EXPECT_EQ(count(*node, "a"), (64u << 10) + (1u << 20));
  list = dirty_bitmaps(*node);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "b");
  EXPECT_EQ(list[1].name, "a");
  EXPECT_FALSE(list[1].busy);

  // Closed while frozen: what is stored is the frozen bits plus the writes.
  ASSERT_TRUE(freeze_dirty_bitmap(*node, "b", true).has_value());
  write(*node, 3 << 20, 4096);
  close(*node);
  node = open_image(true);
  EXPECT_EQ(count(*node, "b"), 256u << 10);
  close(*node);
  EXPECT_EQ(problems(), 0u);
}

TEST_F(Qcow2BitmapTest, InUseWhileOpenAndAfterAnUncleanClose) {
  NodePtr node = open_image();
  ASSERT_OK(add_dirty_bitmap(*node, "b0", std::nullopt, BitmapPersistence::kPersistent,
                             BitmapRecording::kEnabled));
  close(*node);
  node = open_image();
  ASSERT_EQ(directory().bitmaps.size(), 1u);
  EXPECT_NE(directory().bitmaps[0].flags & kBitmapInUse, 0u);  // set at open, on disk
  write(*node, 0, 65536);
  // A crash: the node goes without close(); whatever reached the file stays.
  ASSERT_OK(run_sync(*loop_, node->flush()));
  node.reset();
  EXPECT_NE(directory().bitmaps[0].flags & kBitmapInUse, 0u);

  node = open_image();
  const std::vector<DirtyBitmapInfo> infos = dirty_bitmaps(*node);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_TRUE(infos[0].inconsistent);
  Status cleared = clear_dirty_bitmap(*node, "b0");
  ASSERT_FALSE(cleared.has_value());
  EXPECT_EQ(cleared.error().message(),
            "Bitmap 'b0' is inconsistent and cannot be used\n"
            "Try block-dirty-bitmap-remove to delete this bitmap from disk");
  ASSERT_OK(run_sync(*loop_, remove_dirty_bitmap(*node, "b0")));
  close(*node);
  EXPECT_TRUE(directory().bitmaps.empty());
  EXPECT_EQ(problems(), 0u);
}

TEST_F(Qcow2BitmapTest, ReadOnlyOpensLeaveTheImageAlone) {
  NodePtr node = open_image();
  ASSERT_OK(add_dirty_bitmap(*node, "b0", std::nullopt, BitmapPersistence::kPersistent,
                             BitmapRecording::kEnabled));
  close(*node);
  const uint64_t table = directory().bitmaps.at(0).table_offset;
  node = open_image(true);
  EXPECT_EQ(directory().bitmaps.at(0).flags & kBitmapInUse, 0u);
  EXPECT_FALSE(add_dirty_bitmap(*node, "b0", std::nullopt, BitmapPersistence::kPersistent,
                                BitmapRecording::kEnabled)
                   .has_value());
  close(*node);
  EXPECT_EQ(directory().bitmaps.at(0).table_offset, table);
}

TEST_F(Qcow2BitmapTest, DamagedTableEntryFailsTheOpen) {
  NodePtr node = open_image();
  ASSERT_OK(add_dirty_bitmap(*node, "b0", std::nullopt, BitmapPersistence::kPersistent,
                             BitmapRecording::kEnabled));
  write(*node, 0, 4096);
  close(*node);
  const uint64_t table = directory().bitmaps.at(0).table_offset;
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(table + 7));
    const char reserved = 0x02;
    f.write(&reserved, 1);
  }
  OpenFlags flags;
  Result<NodePtr> opened = run_sync(
      *loop_, open_node(*loop_,
                        Options::parse(R"({"driver":"qcow2","file":{"driver":"file","filename":")" +
                                       path_ + "\"}}"),
                        flags, ""));
  ASSERT_FALSE(opened.has_value());
  EXPECT_EQ(opened.error().message(),
            "Could not read bitmap_table table from image for bitmap 'b0': Invalid argument");
}

}  // namespace
}  // namespace qblock::qcow2
