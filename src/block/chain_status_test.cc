// chain_status: which layer of a backing chain decides an extent, and what it reports.
#include "block/chain_status.h"

#include <gtest/gtest.h>

#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/test_util.h"

namespace qblock {
namespace {

using testing::LoopTest;
using testing::TempDir;

constexpr uint64_t kCluster = 65536;

// A 64 MiB qcow2 image (64 KiB clusters) over a 1 MiB memory backing file full of data:
// cluster 0 written in the top image, cluster 1 zeroed there, the rest left to the backing
// file, which ends at 1 MiB.
class ChainStatusTest : public LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    qcow2::Qcow2CreateOptions opts;
    opts.filename = dir_.file("top.qcow2");
    opts.size = 64 << 20;
    ASSERT_OK(run_sync(*loop_, qcow2::create_qcow2(*loop_, opts)));
    top_ = open(R"({"driver":"qcow2","file":{"driver":"memory","image":")" + opts.filename +
                R"("},"backing":{"driver":"memory","size":1048576}})");
    ASSERT_TRUE(top_);
    std::vector<uint8_t> data(kCluster, 0x5a);
    ASSERT_OK(run_sync(*loop_, top_->write(0, IoVec(data.data(), data.size()), {})));
    ASSERT_OK(run_sync(*loop_, top_->write_zeroes(kCluster, kCluster, {})));
  }
  ChainStatus status(uint64_t offset, ChainStatusQuery query = {}) {
    Result<ChainStatus> st = run_sync(*loop_, chain_status(top_.get(), offset, kCluster, query));
    EXPECT_TRUE(st.has_value());
    return st ? *st : ChainStatus{};
  }
  TempDir dir_;
  NodePtr top_;
};

TEST_F(ChainStatusTest, TheFirstLayerWithDataOrZeroDecides) {
  const ChainStatus written = status(0);
  EXPECT_EQ(written.layer, 0u);
  EXPECT_TRUE(written.defined);
  EXPECT_TRUE(written.status.flags & kStatusData);
  EXPECT_EQ(written.status.bytes, kCluster);

  const ChainStatus zeroed = status(kCluster);
  EXPECT_EQ(zeroed.layer, 0u);
  EXPECT_TRUE(zeroed.defined);
  EXPECT_TRUE(zeroed.status.flags & kStatusZero);
  EXPECT_FALSE(zeroed.status.flags & kStatusData);

  const ChainStatus from_backing = status(2 * kCluster);
  EXPECT_EQ(from_backing.layer, 1u);
  EXPECT_TRUE(from_backing.defined);
  EXPECT_TRUE(from_backing.status.flags & kStatusData);
}

TEST_F(ChainStatusTest, AnExtentPastTheBackingFileReadsAsZerosAndIsNotAllocated) {
  const ChainStatus past = status(2 << 20);
  EXPECT_FALSE(past.defined);
  EXPECT_EQ(past.layer, 0u);  // the backing file was not asked: it ends before the extent
  EXPECT_EQ(past.status.flags & (kStatusZero | kStatusData | kStatusAllocated), kStatusZero);
  EXPECT_EQ(past.status.bytes, kCluster);
}

TEST_F(ChainStatusTest, TopOnlyReturnsTheTopAnswerAsItIs) {
  ChainStatusQuery query;
  query.top_only = true;
  const ChainStatus top = status(2 * kCluster, query);
  EXPECT_EQ(top.layer, 0u);
  EXPECT_FALSE(top.status.flags & (kStatusData | kStatusZero));
}

int g_refined = 0;
Task<Status> mark_zero(BlockNode*, BlockStatus* st) {
  ++g_refined;
  st->flags |= kStatusZero;
  co_return ok();
}

// The refinement runs before the layer is judged: a top layer made to say "zero" decides.
TEST_F(ChainStatusTest, RefineRunsOnEachAnswerBeforeItIsJudged) {
  ChainStatusQuery query;
  query.refine = mark_zero;
  g_refined = 0;
  const ChainStatus st = status(2 * kCluster, query);
  EXPECT_EQ(g_refined, 1);
  EXPECT_EQ(st.layer, 0u);
  EXPECT_TRUE(st.status.flags & kStatusZero);
}

}  // namespace
}  // namespace qblock
