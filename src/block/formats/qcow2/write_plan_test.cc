// The write planner against L2 slice fixtures: every branch of plan_write_step(), the run
// scanner's rules, the allocation layout, the COW choice and the fate of a joined piece.
// No I/O, no event loop.
#include "block/formats/qcow2/write_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace qblock::qcow2 {
namespace {

constexpr uint64_t kCs = 64 * 1024;
constexpr uint64_t kSliceGuest = 16 * kCs;  // the fixture slice starts at guest cluster 16

uint64_t normal(uint64_t host, bool copied = true) { return host | (copied ? kCopied : 0); }
uint64_t zero_alloc(uint64_t host) { return host | kCopied | kZeroFlag; }
uint64_t guest_of(uint64_t index) { return kSliceGuest + index * kCs; }

class WritePlanTest : public ::testing::Test {
 protected:
  WritePlanTest() : entries_(16, 0) {}

  WriteStep plan(uint64_t guest, uint64_t bytes) {
    WriteQuery q;
    q.slice = SliceView{entries_, kSliceGuest, kCs};
    q.guest = guest;
    q.bytes = bytes;
    q.table_offset = 0x40000;
    q.table_first_index = 16;
    return plan_write_step(q, fences_);
  }
  FenceRange& fence(uint64_t first_index, uint64_t clusters, bool ready, uint64_t host = 0) {
    owned_.push_back(std::make_unique<FenceRange>());
    FenceRange& f = *owned_.back();
    f.start = guest_of(first_index);
    f.end = f.start + clusters * kCs;
    f.ready = ready;
    f.host = host;
    fences_.push_back(&f);
    return f;
  }

  std::vector<uint64_t> entries_;
  std::vector<FenceRange*> fences_;
  std::vector<std::unique_ptr<FenceRange>> owned_;
};

// ---- in place ----------------------------------------------------------------------------

TEST_F(WritePlanTest, CopiedClustersContiguousOnTheHostAreOneInPlaceWrite) {
  entries_[2] = normal(0x100000);
  entries_[3] = normal(0x110000);
  entries_[4] = normal(0x200000);  // not contiguous: the run stops before it
  WriteStep step = plan(guest_of(2) + 512, 3 * kCs);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->host, 0x100000u + 512);
  EXPECT_EQ(w->bytes, 2 * kCs - 512);
  EXPECT_TRUE(w->zero_alloc.empty());
}

TEST_F(WritePlanTest, InPlaceRunStopsWhereTheCopiedBitChanges) {
  entries_[2] = normal(0x100000);
  entries_[3] = normal(0x110000, /*copied=*/false);
  WriteStep step = plan(guest_of(2), 2 * kCs);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->bytes, kCs);
}

TEST_F(WritePlanTest, InPlaceRunIsCappedByTheRequest) {
  entries_[2] = normal(0x100000);
  entries_[3] = normal(0x110000);
  WriteStep step = plan(guest_of(2) + 4096, 4096);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->host, 0x101000u);
  EXPECT_EQ(w->bytes, 4096u);
}

TEST_F(WritePlanTest, InPlaceRunStopsAtTheEndOfTheSlice) {
  entries_[15] = normal(0x100000);
  WriteStep step = plan(guest_of(15), 3 * kCs);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->bytes, kCs);
}

// block-semantics.md §6.2 C11 (iotest 066 case 4).
TEST_F(WritePlanTest, PreallocatedZeroClustersCoveredWholeMergeIntoOneFencedInPlaceWrite) {
  entries_[2] = zero_alloc(0x100000);
  entries_[3] = normal(0x110000);
  entries_[4] = zero_alloc(0x120000);
  WriteStep step = plan(guest_of(2), 3 * kCs);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->host, 0x100000u);
  EXPECT_EQ(w->bytes, 3 * kCs);
  EXPECT_EQ(w->zero_alloc, (std::vector<uint64_t>{2, 4}));
}

TEST_F(WritePlanTest, NormalClusterFollowedByACoveredZeroClusterMergesToo) {
  entries_[2] = normal(0x100000);
  entries_[3] = zero_alloc(0x110000);
  WriteStep step = plan(guest_of(2) + 4096, 2 * kCs - 4096);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->host, 0x101000u);
  EXPECT_EQ(w->bytes, 2 * kCs - 4096);
  EXPECT_EQ(w->zero_alloc, (std::vector<uint64_t>{3}));
}

TEST_F(WritePlanTest, ZeroClusterCoveredOnlyPartlyEndsTheInPlaceRun) {
  entries_[2] = normal(0x100000);
  entries_[3] = zero_alloc(0x110000);
  WriteStep step = plan(guest_of(2), kCs + 4096);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->bytes, kCs);
  EXPECT_TRUE(w->zero_alloc.empty()) << "the partial zero cluster is not written in place";
}

TEST_F(WritePlanTest, FencedZeroClusterIsNotMergedIntoAnInPlaceRun) {
  entries_[2] = normal(0x100000);
  entries_[3] = zero_alloc(0x110000);
  fence(3, 1, /*ready=*/false);
  WriteStep step = plan(guest_of(2), 2 * kCs);
  auto* w = std::get_if<WriteInPlace>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->bytes, kCs);
  EXPECT_TRUE(w->zero_alloc.empty());
}

// ---- waiting and joining -----------------------------------------------------------------

TEST_F(WritePlanTest, ClusterOfAnAllocationNotYetSettledMeansWait) {
  FenceRange& f = fence(2, 2, /*ready=*/false);
  WriteStep step = plan(guest_of(3) + 100, 4096);
  auto* w = std::get_if<WaitForFence>(&step);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->fence, &f);
}

TEST_F(WritePlanTest, SettledAllocationIsJoinedUpToItsEnd) {
  FenceRange& f = fence(2, 2, /*ready=*/true, 0x500000);
  entries_[4] = normal(0x100000);  // in place: not allocated together with the join
  WriteStep step = plan(guest_of(3) + 1024, 2 * kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->fence, &f);
  EXPECT_EQ(j->host, 0x500000u + kCs + 1024);
  EXPECT_EQ(j->bytes, kCs - 1024);
  EXPECT_FALSE(j->then_allocate);
}

TEST_F(WritePlanTest, JoinInsideTheAllocationCoversOnlyTheRequest) {
  fence(2, 4, /*ready=*/true, 0x500000);
  WriteStep step = plan(guest_of(3), 4096);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->bytes, 4096u);
  EXPECT_FALSE(j->then_allocate);
}

// W3: a misaligned write joins the previous request's cluster and allocates the next one.
TEST_F(WritePlanTest, JoinEndingBeforeAnUnallocatedClusterAllocatesItToo) {
  fence(2, 1, /*ready=*/true, 0x500000);
  WriteStep step = plan(guest_of(2) + 1024, kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->bytes, kCs - 1024);
  ASSERT_TRUE(j->then_allocate);
  EXPECT_EQ(j->then_allocate->guest, guest_of(3));
  EXPECT_EQ(j->then_allocate->bytes, 1024u);
  EXPECT_EQ(j->then_allocate->first_index, 3u);
  EXPECT_EQ(j->then_allocate->count, 1u);
  EXPECT_FALSE(j->then_allocate->reuse_zero_cluster);
}

TEST_F(WritePlanTest, JoinBeforeAPlainZeroClusterAllocatesIt) {
  fence(2, 1, /*ready=*/true, 0x500000);
  entries_[3] = kZeroFlag;
  WriteStep step = plan(guest_of(2) + 1024, kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_TRUE(j->then_allocate);
}

TEST_F(WritePlanTest, JoinBeforeAClusterAnotherRequestAllocatesDoesNotAllocateIt) {
  fence(2, 1, /*ready=*/true, 0x500000);
  fence(3, 1, /*ready=*/false);
  WriteStep step = plan(guest_of(2) + 1024, kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_FALSE(j->then_allocate);
}

TEST_F(WritePlanTest, JoinBeforeAnAllocatedClusterDoesNotAllocate) {
  fence(2, 1, /*ready=*/true, 0x500000);
  entries_[3] = normal(0x100000, /*copied=*/false);
  WriteStep step = plan(guest_of(2) + 1024, kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_FALSE(j->then_allocate) << "only clusters without data are allocated with a join";
}

TEST_F(WritePlanTest, JoinAtTheEndOfTheSliceDoesNotLookPastIt) {
  fence(15, 1, /*ready=*/true, 0x500000);
  WriteStep step = plan(guest_of(15) + 1024, kCs);
  auto* j = std::get_if<Join>(&step);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(j->bytes, kCs - 1024);
  EXPECT_FALSE(j->then_allocate);
}

// ---- allocation --------------------------------------------------------------------------

TEST_F(WritePlanTest, UnallocatedClustersAreAllocatedAsOneRunUpToTheRequestEnd) {
  WriteStep step = plan(guest_of(2) + 4096, 3 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->guest, guest_of(2) + 4096);
  EXPECT_EQ(a->bytes, 3 * kCs);
  EXPECT_EQ(a->first_index, 2u);
  EXPECT_EQ(a->count, 4u);
  EXPECT_FALSE(a->reuse_zero_cluster);
}

TEST_F(WritePlanTest, AllocationRunStopsAtACopiedCluster) {
  entries_[4] = normal(0x100000);
  WriteStep step = plan(guest_of(2), 5 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 2u);
}

TEST_F(WritePlanTest, AllocationRunStopsAtAFencedCluster) {
  fence(4, 1, /*ready=*/true, 0x500000);
  WriteStep step = plan(guest_of(2), 5 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 2u);
}

TEST_F(WritePlanTest, AllocationRunStopsAtAPreallocatedZeroClusterAfterTheFirst) {
  entries_[3] = zero_alloc(0x110000);
  WriteStep step = plan(guest_of(2), 3 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 1u);
}

TEST_F(WritePlanTest, AllocationRunStopsAtTheEndOfTheSlice) {
  WriteStep step = plan(guest_of(14), 5 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 2u);
}

TEST_F(WritePlanTest, SharedAndCompressedAndZeroClustersAreAllocatedTogether) {
  entries_[2] = normal(0x100000, /*copied=*/false);  // shared with a snapshot: COW
  entries_[3] = kCompressedFlag | 0x123400;          // compressed: rewritten uncompressed
  entries_[4] = kZeroFlag;                           // plain zero
  entries_[5] = zero_alloc(0x130000) & ~kCopied;     // shared preallocated zero cluster
  WriteStep step = plan(guest_of(2), 4 * kCs);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 4u);
}

TEST_F(WritePlanTest, PartialWriteIntoAPreallocatedZeroClusterReusesIt) {
  entries_[2] = zero_alloc(0x100000);
  WriteStep step = plan(guest_of(2) + 4096, 4096);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->count, 1u);
  EXPECT_TRUE(a->reuse_zero_cluster);
}

TEST_F(WritePlanTest, SharedPreallocatedZeroClusterIsNotReused) {
  entries_[2] = zero_alloc(0x100000) & ~kCopied;
  WriteStep step = plan(guest_of(2) + 4096, 4096);
  auto* a = std::get_if<Allocate>(&step);
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->reuse_zero_cluster);
}

// ---- damaged entries ---------------------------------------------------------------------

TEST_F(WritePlanTest, UnalignedDataClusterIsACorruption) {
  entries_[2] = normal(0x100200);
  WriteStep step = plan(guest_of(2), 4096);
  auto* c = std::get_if<Corrupt>(&step);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->message,
            "Cluster allocation offset 0x100200 unaligned (L2 offset: 0x40000, L2 index: 0x12)");
}

TEST_F(WritePlanTest, UnalignedPreallocatedZeroClusterIsACorruption) {
  entries_[2] = zero_alloc(0x100200);
  WriteStep step = plan(guest_of(2) + 4096, 4096);
  auto* c = std::get_if<Corrupt>(&step);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(c->message.find("unaligned"), std::string::npos);
}

// ---- layout, COW choice, joined pieces ----------------------------------------------------

TEST_F(WritePlanTest, LayoutOfAFullGrant) {
  Allocate a{guest_of(2) + 4096, 2 * kCs, 2, 3, false};
  AllocationLayout l = allocation_layout(a, 3, kCs);
  EXPECT_EQ(l.head, 4096u);
  EXPECT_EQ(l.data, 2 * kCs);
  EXPECT_EQ(l.tail, kCs - 4096);
}

TEST_F(WritePlanTest, LayoutOfAShorterGrantHasNoTail) {
  Allocate a{guest_of(2) + 4096, 2 * kCs, 2, 3, false};
  AllocationLayout l = allocation_layout(a, 1, kCs);
  EXPECT_EQ(l.head, 4096u);
  EXPECT_EQ(l.data, kCs - 4096);
  EXPECT_EQ(l.tail, 0u) << "the rest of the request goes into the next allocation";
}

TEST_F(WritePlanTest, CowChoice) {
  const AllocationLayout aligned{0, kCs, 0};
  const AllocationLayout partial{4096, 4096, kCs - 8192};
  EXPECT_EQ(choose_cow(aligned, false, false, true), CowMethod::kDataOnly);
  EXPECT_EQ(choose_cow(partial, true, true, true), CowMethod::kZeroThenData);
  EXPECT_EQ(choose_cow(partial, true, true, false), CowMethod::kMergedCow) << "zero-cow=off";
  EXPECT_EQ(choose_cow(partial, false, true, true), CowMethod::kMergedCow) << "backing data";
  EXPECT_EQ(choose_cow(partial, true, false, true), CowMethod::kMergedCow);
}

TEST_F(WritePlanTest, JoinedPieceIsRewrittenWhenItsAllocationWasGivenUp) {
  EXPECT_EQ(resolve_joined(/*fence_linked=*/true), JoinedOutcome::kDone);
  EXPECT_EQ(resolve_joined(/*fence_linked=*/false), JoinedOutcome::kRewrite);
}

// ---- the run scanner's mapping rule (reads, block status) ---------------------------------

TEST_F(WritePlanTest, MappingRunsKeepOneTreatment) {
  const SliceView slice{entries_, kSliceGuest, kCs};
  entries_[0] = normal(0x100000);
  entries_[1] = normal(0x110000);
  entries_[2] = normal(0x120000, /*copied=*/false);
  entries_[3] = kCompressedFlag | 0x200000;
  entries_[4] = kCompressedFlag | 0x200400;
  entries_[5] = kZeroFlag;
  entries_[6] = kZeroFlag;
  EXPECT_EQ(scan_run(slice, guest_of(0), 16 * kCs, RunRule::kSameMapping, fences_).clusters, 2u);
  EXPECT_EQ(scan_run(slice, guest_of(2), 16 * kCs, RunRule::kSameMapping, fences_).clusters, 1u);
  EXPECT_EQ(scan_run(slice, guest_of(3), 16 * kCs, RunRule::kSameMapping, fences_).clusters, 1u)
      << "a compressed cluster stands alone";
  EXPECT_EQ(scan_run(slice, guest_of(5), 16 * kCs, RunRule::kSameMapping, fences_).clusters, 2u);
  const ClusterRun tail =
      scan_run(slice, guest_of(7) + 100, 16 * kCs, RunRule::kSameMapping, fences_);
  EXPECT_EQ(tail.clusters, 9u) << "unallocated up to the slice end";
  EXPECT_EQ(tail.bytes, 9 * kCs - 100);
}

}  // namespace
}  // namespace qblock::qcow2
