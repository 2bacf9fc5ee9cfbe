// DirtyBitmap's serialized form (QEMU's bitmap data clusters), merge, resize and clear.
#include "block/dirty_bitmap.h"

#include <gtest/gtest.h>

#include <vector>

namespace qblock {
namespace {

TEST(DirtyBitmapTest, SerializesLeastSignificantBitFirst) {
  DirtyBitmap b(64 << 20, 65536);  // 1024 granules, 128 bytes
  b.set(0, 1);
  b.set(1 << 20, 65536 + 1);  // granules 16 and 17
  b.set((64 << 20) - 1, 1);   // granule 1023
  EXPECT_EQ(b.serialized_bytes(), 128u);
  std::vector<uint8_t> out(130, 0xaa);
  b.serialize(0, out);
  EXPECT_EQ(out[0], 0x01);
  EXPECT_EQ(out[2], 0x03);
  EXPECT_EQ(out[127], 0x80);
  EXPECT_EQ(out[128], 0);  // past the end reads as zero
  EXPECT_EQ(out[1], 0);

  DirtyBitmap c(64 << 20, 65536);
  c.deserialize(0, std::span<const uint8_t>(out.data(), 128));
  EXPECT_EQ(c.dirty_bytes(), b.dirty_bytes());
  for (uint64_t g = 0; g < c.granules(); ++g) EXPECT_EQ(c.test_granule(g), b.test_granule(g));
}

TEST(DirtyBitmapTest, DeserializeAtAnOffsetIgnoresBitsPastTheEnd) {
  DirtyBitmap b(100 * 512, 512);  // 100 granules
  const std::vector<uint8_t> ones(16, 0xff);
  b.deserialize(8, ones);  // granules 64.. (and past 100: ignored)
  EXPECT_EQ(b.dirty_bytes(), 36u * 512);
  EXPECT_FALSE(b.test_granule(63));
  EXPECT_TRUE(b.test_granule(99));
}

TEST(DirtyBitmapTest, MergeAcrossGranularities) {
  DirtyBitmap fine(1 << 20, 4096);
  DirtyBitmap coarse(1 << 20, 65536);
  coarse.set(65536 * 3, 1);
  fine.merge(coarse);
  EXPECT_EQ(fine.dirty_bytes(), 65536u);
  EXPECT_TRUE(fine.test_granule(48));
  EXPECT_TRUE(fine.test_granule(63));
  EXPECT_FALSE(fine.test_granule(64));
  DirtyBitmap same(1 << 20, 4096);
  same.set(0, 4096);
  same.merge(fine);
  EXPECT_EQ(same.dirty_bytes(), 65536u + 4096);
}

TEST(DirtyBitmapTest, ResizeDropsGranulesPastTheEndAndGrowsClean) {
  DirtyBitmap b(1 << 20, 65536);
  b.set(0, 1 << 20);
  b.resize(512 << 10);
  EXPECT_EQ(b.dirty_bytes(), 512u << 10);
  b.resize(2 << 20);
  EXPECT_EQ(b.dirty_bytes(), 512u << 10);
  EXPECT_FALSE(b.test_granule(31));
  b.set((2 << 20) - 1, 1);
  b.clear();
  EXPECT_FALSE(b.any());
}

}  // namespace
}  // namespace qblock
