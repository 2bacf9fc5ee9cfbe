// IoVec: the inline segments, the spill to the heap past kInlineSegments, and copies, moves
// and slices on both sides of that boundary.
#include "qblock/iovec.h"

#include <gtest/gtest.h>

#include <numeric>

namespace qblock {
namespace {

// A buffer of `n` bytes 0, 1, 2, ... and an IoVec over it in `segments` equal pieces.
struct Pattern {
  explicit Pattern(std::size_t n, unsigned segments) : bytes(n) {
    std::iota(bytes.begin(), bytes.end(), uint8_t{0});
    const std::size_t piece = n / segments;
    for (unsigned i = 0; i < segments; ++i) qiov.append(bytes.data() + i * piece, piece);
  }
  std::vector<uint8_t> bytes;
  IoVec qiov;
};

class IoVecTest : public ::testing::TestWithParam<unsigned> {};

TEST_P(IoVecTest, SegmentsSizeAndCopies) {
  const unsigned n = GetParam();
  Pattern p(64 * n, n);
  EXPECT_EQ(p.qiov.count(), n);
  EXPECT_EQ(p.qiov.size(), 64u * n);
  ASSERT_EQ(p.qiov.segments().size(), n);
  EXPECT_EQ(p.qiov.data(), p.qiov.segments().data());
  EXPECT_EQ(p.qiov.data()[n - 1].iov_base, p.bytes.data() + 64 * (n - 1));

  std::vector<uint8_t> out(p.bytes.size());
  p.qiov.copy_to(0, out.data(), out.size());
  EXPECT_EQ(out, p.bytes);

  IoVec copy = p.qiov;
  EXPECT_EQ(copy.count(), n);
  copy.memset(10, 0xff, 64 * n - 20);
  EXPECT_EQ(p.bytes[9], 9);
  EXPECT_EQ(p.bytes[10], 0xff);
  EXPECT_EQ(p.bytes[64 * n - 11], 0xff);
  EXPECT_EQ(p.bytes[64 * n - 10], static_cast<uint8_t>(64 * n - 10));

  IoVec moved = std::move(copy);
  EXPECT_EQ(moved.count(), n);
  EXPECT_EQ(moved.size(), 64u * n);
  EXPECT_EQ(copy.count(), 0u);  // NOLINT(bugprone-use-after-move): documented as empty
  EXPECT_EQ(copy.size(), 0u);   // NOLINT(bugprone-use-after-move)
  std::vector<uint8_t> in(64 * n, 7);
  moved.copy_from(0, in.data(), in.size());
  EXPECT_EQ(p.bytes, in);
}

TEST_P(IoVecTest, SliceCrossesSegments) {
  const unsigned n = GetParam();
  Pattern p(64 * n, n);
  IoVec s = p.qiov.slice(32, 64 * n - 40);
  EXPECT_EQ(s.size(), 64u * n - 40);
  EXPECT_EQ(s.count(), n);
  EXPECT_EQ(s.data()[0].iov_base, p.bytes.data() + 32);
  std::vector<uint8_t> out(s.size());
  s.copy_to(0, out.data(), out.size());
  EXPECT_TRUE(std::equal(out.begin(), out.end(), p.bytes.begin() + 32));
}

TEST_P(IoVecTest, AppendAndAssignAcrossTheInlineBoundary) {
  const unsigned n = GetParam();
  Pattern p(64 * n, n);
  IoVec joined = p.qiov;
  joined.append(p.qiov);
  EXPECT_EQ(joined.count(), 2 * n);
  EXPECT_EQ(joined.size(), 128u * n);
  EXPECT_EQ(joined.data()[n].iov_base, p.bytes.data());

  IoVec small(p.bytes.data(), 8);
  small = joined;
  EXPECT_EQ(small.count(), 2 * n);
  joined = IoVec(p.bytes.data(), 8);
  EXPECT_EQ(joined.count(), 1u);
  EXPECT_EQ(joined.data()[0].iov_len, 8u);
  joined = std::move(small);
  EXPECT_EQ(joined.count(), 2 * n);
  EXPECT_EQ(joined.data()[2 * n - 1].iov_base, p.bytes.data() + 64 * (n - 1));
}

INSTANTIATE_TEST_SUITE_P(SegmentCounts, IoVecTest,
                         ::testing::Values(1u, 2u, IoVec::kInlineSegments - 1,
                                           IoVec::kInlineSegments, IoVec::kInlineSegments + 1,
                                           3 * IoVec::kInlineSegments));

TEST(IoVecTest, VectorConstructorAndZeroLengthAppend) {
  std::vector<uint8_t> buf(100, 0);
  std::vector<iovec> many;
  for (int i = 0; i < 10; ++i) many.push_back(iovec{buf.data() + i * 10, 10});
  IoVec v(many);
  EXPECT_EQ(v.count(), 10u);
  EXPECT_EQ(v.size(), 100u);
  EXPECT_TRUE(v.is_zero());
  v.append(buf.data(), 0);
  EXPECT_EQ(v.count(), 10u);
  IoVec few(std::vector<iovec>(many.begin(), many.begin() + 2));
  EXPECT_EQ(few.count(), 2u);
  EXPECT_EQ(few.size(), 20u);
}

}  // namespace
}  // namespace qblock
