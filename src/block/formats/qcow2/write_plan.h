// The qcow2 write planner: a pure function that decides the next step of a guest write from
// the L2 slice it goes through, the allocations in flight and what is left of the request
// (block-semantics.md §5–§6). The executor (write_path.cc) carries the step out and asks
// again for the rest. Nothing here does I/O, so every branch is tested against table
// fixtures (write_plan_test.cc).
//
// Room for what comes next (docs/architecture.md, "The write planner"): with extended L2
// entries a step covers subcluster ranges of its clusters and the COW regions shrink to the
// partly written subclusters; with encryption, CowMethod gains a method that reads, decrypts
// and re-encrypts the COW regions, and kZeroThenData is never chosen (zeroed host clusters do
// not decrypt to zeros).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "block/formats/qcow2/allocation_fence.h"
#include "block/formats/qcow2/cluster_run.h"

namespace qblock::qcow2 {

// What is left of a write: `bytes` from guest offset `guest`, which lies in `slice`.
struct WriteQuery {
  SliceView slice;
  uint64_t guest = 0;
  uint64_t bytes = 0;
  uint64_t table_offset = 0;       // host offset of the slice's L2 table (for messages)
  uint64_t table_first_index = 0;  // index of slice.entries[0] in its L2 table
};

// Write [guest, guest + bytes) in place at `host` with one request. With `zero_alloc`
// (preallocated zero clusters in the run, by slice index) the run's clusters are fenced for
// the write and those entries lose their zero flag afterwards (iotest 066 case 4).
struct WriteInPlace {
  uint64_t host = 0;
  uint64_t bytes = 0;
  std::vector<uint64_t> zero_alloc;
};

// The first cluster is being allocated by another request that has not settled its COW
// contents yet: wait for the fence, then plan again.
struct WaitForFence {
  FenceRange* fence = nullptr;
};

// Allocate up to `count` clusters from slice index `first_index` for the write starting at
// `guest` (the allocator may grant fewer; allocation_layout() says what they then hold).
// `reuse_zero_cluster`: the single cluster is a preallocated zero cluster with refcount 1,
// whose host cluster is filled in place instead of a new one.
struct Allocate {
  uint64_t guest = 0;
  uint64_t bytes = 0;  // request bytes from `guest`
  uint64_t first_index = 0;
  uint64_t count = 0;
  bool reuse_zero_cluster = false;
};

// Write `bytes` straight into the settled new clusters of another request (`fence`), at
// `host`, counted among its writers. With `then_allocate`, the rest of the request starts at
// a cluster this request allocates itself: the joined piece goes out together with that
// allocation's first write when the host clusters are contiguous (W3's misaligned writes).
struct Join {
  FenceRange* fence = nullptr;
  uint64_t host = 0;
  uint64_t bytes = 0;
  std::optional<Allocate> then_allocate;
};

// The L2 entry is damaged: a fatal corruption event with this message (§12).
struct Corrupt {
  std::string message;
};

using WriteStep = std::variant<WriteInPlace, WaitForFence, Allocate, Join, Corrupt>;

// The next step of the write `q`. `fences` are the allocations in flight. REQUIRES:
// q.bytes > 0; q.guest inside q.slice.
WriteStep plan_write_step(const WriteQuery& q, const std::vector<FenceRange*>& fences);

// What `granted` new clusters hold for an allocation planned as `a` (the allocator may have
// granted fewer than a.count): the COW head before the data, the data, the COW tail after it.
struct AllocationLayout {
  uint64_t head = 0;
  uint64_t data = 0;
  uint64_t tail = 0;
};
AllocationLayout allocation_layout(const Allocate& a, uint64_t granted, uint64_t cluster_size);

// How the new clusters get their COW contents.
enum class CowMethod {
  kDataOnly,      // no COW region: the data write fills the clusters
  kZeroThenData,  // one ALLOCATE write-zeroes of the clusters, then the data (§5.2)
  kMergedCow,     // head + data + tail read and written as one vectored write (§5.3)
};
// REQUIRES: head_reads_zero/tail_reads_zero say whether those regions read as zeros (true
// when absent). A failed kZeroThenData zeroing falls back to kMergedCow (the executor's job).
CowMethod choose_cow(const AllocationLayout& layout, bool head_reads_zero, bool tail_reads_zero,
                     bool zero_cow_enabled);

// What becomes of a piece written into another request's allocation once that allocation
// has finished: linked, the piece is on disk through its L2 entry; given up, the piece must
// be written again as a write of its own.
enum class JoinedOutcome { kDone, kRewrite };
JoinedOutcome resolve_joined(bool fence_linked);

}  // namespace qblock::qcow2
