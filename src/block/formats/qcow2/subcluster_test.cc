// The subcluster bitmap logic of extended L2 entries (qcow2-format.md §7): types, runs and
// the bit ranges. No I/O.
#include "block/formats/qcow2/subcluster.h"

#include <gtest/gtest.h>

namespace qblock::qcow2 {
namespace {

constexpr uint64_t kHost = 0x50000 | kCopied;

TEST(SubclusterTest, Ranges) {
  EXPECT_EQ(alloc_range(0, 0), 0u);
  EXPECT_EQ(alloc_range(2, 2), 0xcu);
  EXPECT_EQ(alloc_range(0, 32), kAllAllocBits);
  EXPECT_EQ(alloc_range(31, 1), 0x80000000u);
  EXPECT_EQ(zero_range(0, 32), kAllZeroBits);
  EXPECT_EQ(zero_range(1, 1), uint64_t{1} << 33);
}

TEST(SubclusterTest, TypesOfEveryState) {
  // §7.3's observed entry: host cluster, subclusters 2 and 3 allocated.
  EXPECT_EQ(subcluster_type(kHost, 0xc, 2), SubclusterType::kNormal);
  EXPECT_EQ(subcluster_type(kHost, 0xc, 0), SubclusterType::kUnallocatedAlloc);
  EXPECT_EQ(subcluster_type(0, 0, 5), SubclusterType::kUnallocatedPlain);
  EXPECT_EQ(subcluster_type(0, zero_range(5, 1), 5), SubclusterType::kZeroPlain);
  EXPECT_EQ(subcluster_type(kHost, zero_range(5, 1), 5), SubclusterType::kZeroAlloc);
  EXPECT_EQ(subcluster_type(kCompressedFlag | 0x1234, 0, 7), SubclusterType::kCompressed);
}

TEST(SubclusterTest, InvalidStates) {
  EXPECT_EQ(subcluster_type(kHost, alloc_range(4, 1) | zero_range(4, 1), 4),
            SubclusterType::kInvalid);
  EXPECT_EQ(subcluster_type(0, alloc_range(4, 1), 4), SubclusterType::kInvalid);
  EXPECT_EQ(subcluster_type(kCompressedFlag | 0x1234, 1, 9), SubclusterType::kInvalid);
}

TEST(SubclusterTest, Runs) {
  EXPECT_EQ(subcluster_run(0, 0, 0), 32u);
  EXPECT_EQ(subcluster_run(0, 0, 31), 1u);
  EXPECT_EQ(subcluster_run(kHost, 0xc, 0), 2u);  // 0, 1 unallocated; 2 allocated
  EXPECT_EQ(subcluster_run(kHost, 0xc, 2), 2u);
  EXPECT_EQ(subcluster_run(kHost, 0xc, 4), 28u);
  EXPECT_EQ(subcluster_run(kHost, kAllAllocBits, 7), 25u);
  // Zero and unallocated subclusters are different runs.
  EXPECT_EQ(subcluster_run(0, zero_range(8, 4), 0), 8u);
  EXPECT_EQ(subcluster_run(0, zero_range(8, 4), 8), 4u);
  EXPECT_EQ(subcluster_run(0, zero_range(8, 4), 12), 20u);
  EXPECT_EQ(subcluster_run(kCompressedFlag | 0x1234, 0, 3), 29u);
  EXPECT_EQ(subcluster_run(kHost, alloc_range(4, 1) | zero_range(4, 1), 4), 1u);
}

TEST(SubclusterTest, AsClusterType) {
  EXPECT_EQ(as_cluster_type(SubclusterType::kUnallocatedAlloc), ClusterType::kUnallocated);
  EXPECT_EQ(as_cluster_type(SubclusterType::kUnallocatedPlain), ClusterType::kUnallocated);
  EXPECT_EQ(as_cluster_type(SubclusterType::kZeroPlain), ClusterType::kZeroPlain);
  EXPECT_EQ(as_cluster_type(SubclusterType::kZeroAlloc), ClusterType::kZeroAlloc);
  EXPECT_EQ(as_cluster_type(SubclusterType::kNormal), ClusterType::kNormal);
  EXPECT_EQ(as_cluster_type(SubclusterType::kCompressed), ClusterType::kCompressed);
}

}  // namespace
}  // namespace qblock::qcow2
