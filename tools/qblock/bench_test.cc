// Unit tests of the pure helpers of `qblock bench` (tools/qblock/bench_util.h): qemu_strtoul
// number parsing and the wrap-around of the offset sequence (qemu-compat.md §4.4).
#include <gtest/gtest.h>

#include "qblock/bench_util.h"

namespace qblock::tools {
namespace {

TEST(BenchParseUlong, AcceptsWhatQemuImgAccepts) {
  EXPECT_EQ(parse_ulong("5"), 5u);
  EXPECT_EQ(parse_ulong("010"), 8u);  // base 0: octal, unlike the size parser
  EXPECT_EQ(parse_ulong("0x10"), 16u);
  EXPECT_EQ(parse_ulong(" 5"), 5u);
  EXPECT_EQ(parse_ulong("+5"), 5u);
  EXPECT_EQ(parse_ulong("-0"), 0u);
}

TEST(BenchParseUlong, RejectsMalformedText) {
  EXPECT_FALSE(parse_ulong(""));
  EXPECT_FALSE(parse_ulong("abc"));
  EXPECT_FALSE(parse_ulong("1k"));
  EXPECT_FALSE(parse_ulong("5 "));
  EXPECT_FALSE(parse_ulong("0x"));
  EXPECT_FALSE(parse_ulong("99999999999999999999999"));
  // Negative values wrap around and so fail every range check of the callers.
  EXPECT_GT(*parse_ulong("-1"), 0xffffffffu);
}

TEST(BenchOffsets, WrapsWithinImageMinusBufferAlignedToStep) {
  // 1 MiB + 512 image, 4 KiB requests: 7.2 would cross EOF; qblock wraps at 1 MiB - 4 KiB.
  OffsetSequence seq(0, 4096, 4096, (1 << 20) + 512);
  for (int i = 0; i < 1000; ++i) {
    uint64_t off = seq.next();
    EXPECT_EQ(off % 4096, 0u);
    EXPECT_LE(off + 4096, (1u << 20) + 512);
  }
  OffsetSequence again(0, 4096, 4096, (1 << 20) + 512);
  for (int i = 0; i < 255; ++i) EXPECT_EQ(again.next(), uint64_t(i) * 4096);
  EXPECT_EQ(again.next(), 0u);  // wrapped: 255 * 4 KiB is the limit
}

TEST(BenchOffsets, KeepsTheStartPhase) {
  OffsetSequence seq(1024, 65536, 65536, 1 << 20);
  for (int i = 0; i < 100; ++i) {
    uint64_t off = seq.next();
    EXPECT_EQ(off % 65536, 1024u);
    EXPECT_LE(off + 65536, 1u << 20);
  }
}

TEST(BenchOffsets, NoRoomRepeatsTheStartOffset) {
  OffsetSequence seq(512, 4096, 4096, 5000);
  EXPECT_EQ(seq.next(), 512u);
  EXPECT_EQ(seq.next(), 512u);
  OffsetSequence zero_step(100, 0, 0, 4096);
  EXPECT_EQ(zero_step.next(), 100u);
  EXPECT_EQ(zero_step.next(), 100u);
}

}  // namespace
}  // namespace qblock::tools
