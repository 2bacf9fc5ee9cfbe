// Refcounts over a real image: the batched lookups and updates (get_many, update of a run, the
// free-space scan of allocate_run) agree with one-cluster get() across refcount blocks.
#include "block/formats/qcow2/refcount.h"

#include <gtest/gtest.h>

#include <vector>

#include "block/formats/qcow2/create.h"
#include "block/formats/qcow2/header.h"
#include "block/test_util.h"

namespace qblock::qcow2 {
namespace {

class RefcountsTest : public testing::LoopTest {
 protected:
  // A 4 MiB image of 512-byte clusters: 256 refcount entries per block, so a few hundred
  // clusters span several blocks.
  void SetUp() override {
    LoopTest::SetUp();
    Qcow2CreateOptions o;
    o.filename = dir_.file("r.qcow2");
    o.size = 4 << 20;
    o.cluster_size = 512;
    ASSERT_OK(run_sync(*loop_, create_qcow2(*loop_, o)));
    file_ = open(R"({"driver":"file","filename":")" + o.filename + "\"}");
    ASSERT_TRUE(file_);
    std::vector<uint8_t> buf(512);
    ASSERT_OK(run_sync(*loop_, file_->read(0, IoVec(buf.data(), buf.size()))));
    Result<Header> h = parse_header(buf.data(), buf.size());
    ASSERT_TRUE(h.has_value()) << h.error().message();
    header_ = *h;
    refcounts_ = std::make_unique<Refcounts>(*file_, header_, 4);
    ASSERT_OK(run_sync(*loop_, refcounts_->load()));
  }
  void TearDown() override {
    refcounts_.reset();
    if (file_) close(*file_);
  }
  uint64_t get(uint64_t cluster) {
    Result<uint64_t> r = run_sync(*loop_, refcounts_->get(cluster));
    EXPECT_TRUE(r.has_value());
    return r ? *r : ~uint64_t{0};
  }

  testing::TempDir dir_;
  NodePtr file_;
  Header header_;
  std::unique_ptr<Refcounts> refcounts_;
};

TEST_F(RefcountsTest, UpdateOfARunAcrossBlocksMatchesOneClusterLookups) {
  // Clusters 300..1099: the tail of block 1, blocks 2 and 3, most of block 4.
  ASSERT_OK(run_sync(*loop_, refcounts_->update(300, 800, +1)));
  ASSERT_OK(run_sync(*loop_, refcounts_->update(500, 100, +2)));
  std::vector<uint64_t> clusters;
  for (uint64_t c = 250; c < 1200; c += 7) clusters.push_back(c);
  clusters.push_back(40000);  // past every block: 0
  Result<std::vector<uint64_t>> many = run_sync(*loop_, refcounts_->get_many(clusters));
  ASSERT_TRUE(many.has_value());
  ASSERT_EQ(many->size(), clusters.size());
  for (std::size_t i = 0; i < clusters.size(); ++i) {
    const uint64_t c = clusters[i];
    const uint64_t want = c >= 300 && c < 1100 ? (c >= 500 && c < 600 ? 3 : 1) : get(c);
    EXPECT_EQ((*many)[i], want) << "cluster " << c;
    EXPECT_EQ(get(c), want) << "cluster " << c;
  }
  // An underflow fails at the first cluster that would go below 0 and leaves it alone.
  EXPECT_FALSE(run_sync(*loop_, refcounts_->update(1090, 20, -1)).has_value());
  EXPECT_EQ(get(1099), 0u);
  EXPECT_EQ(get(1100), 0u);
}

TEST_F(RefcountsTest, AllocationScansPastUsedClustersInLaterBlocks) {
  uint64_t first_free = 0;
  while (get(first_free) != 0) ++first_free;
  ASSERT_OK(run_sync(*loop_, refcounts_->update(first_free, 1000 - first_free, +1)));
  // Every cluster below 1000 is in use now; the new refcount blocks found homes at or past it.
  Result<uint64_t> where = run_sync(*loop_, refcounts_->allocate(3));
  ASSERT_TRUE(where.has_value());
  ASSERT_EQ(*where % 512, 0u);
  const uint64_t first = *where / 512;
  EXPECT_GE(first, 1000u);
  for (uint64_t c = 0; c < first + 3; ++c) EXPECT_NE(get(c), 0u) << "cluster " << c;
  EXPECT_EQ(get(first + 3), 0u);
}

}  // namespace
}  // namespace qblock::qcow2
