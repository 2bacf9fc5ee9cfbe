// The checker behind check_image() (check.h), private to check.cc (the walk that counts
// every reference) and check_repair.cc (comparing with the stored refcounts and repairing).
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "block/formats/qcow2/check.h"
#include "block/formats/qcow2/snapshot.h"
#include "qblock/messages.h"

namespace qblock::qcow2::check_internal {

// One diagnostic line (a finding or a repair step), through the message sink: by default on
// stderr after flushing stdout, so merged output keeps its order. A damaged image can make a
// check report millions of lines, one per bogus entry: they are formatted on the stack, and
// not at all while messages are discarded.
template <typename... Args>
void diag(fmt::format_string<Args...> format, Args&&... args) {
  if (messages_discarded()) return;
  fmt::basic_memory_buffer<char, 256> line;
  fmt::format_to(fmt::appender(line), format, std::forward<Args>(args)...);
  emit_message(MessageLevel::kWarning, std::string_view(line.data(), line.size()));
}

// printf's "%#x": no prefix for zero.
inline std::string c_hex(uint64_t v) { return v ? fmt::format("{:#x}", v) : "0"; }

class Checker {
 public:
  Checker(CheckTarget target, unsigned fix)
      : t_(target),
        fix_(fix),
        cs_(target.header.cluster_size()),
        bits_(target.header.cluster_bits),
        refcount_bits_(target.header.refcount_bits()),
        entries_per_block_(cs_ * 8 / refcount_bits_),
        max_refcount_(refcount_bits_ >= 32 ? std::numeric_limits<uint32_t>::max()
                                           : (uint32_t{1} << refcount_bits_) - 1) {}

  Task<Result<CheckResult>> run();

 private:
  struct StoredBlock {
    std::vector<uint8_t> data;
    bool dirty = false;
  };

  // ---- I/O on the image file ----
  Task<Status> read_at(uint64_t offset, uint8_t* buf, uint64_t len);
  Task<Status> write_at(uint64_t offset, const uint8_t* buf, uint64_t len);
  // How many of the `count` 8-byte entries of a table at `offset` start inside the file; the
  // others read as zeros (unused entries), so the walks stop there instead of reading and
  // scanning zeros that a damaged offset or size made up (check.cc).
  uint64_t entries_in_file(uint64_t offset, uint64_t count) const;
  Task<Error> corruption(std::string reason);

  // ---- overlap checks of the repair's writes (qcow2-format.md §13, the default template) ----
  enum Metadata : unsigned {
    kMainHeader = 1u << 0,
    kActiveL1 = 1u << 1,
    kActiveL2 = 1u << 2,
    kRefcountTable = 1u << 3,
    kRefcountBlock = 1u << 4,
    kSnapshotTable = 1u << 5,
    kInactiveL1 = 1u << 6,
    kBitmapDirectory = 1u << 7,
  };
  // The structure (QEMU's name for it) that [offset, offset + bytes) would overwrite, among
  // those not in `ignore` (a Metadata mask), or nullptr.
  const char* overlapping_metadata(uint64_t offset, uint64_t bytes, unsigned ignore) const;
  // True if a write of [offset, offset + bytes) must not happen because it overwrites
  // metadata; the fatal corruption event ("Preventing invalid write on metadata") is reported.
  Task<bool> refuse_overlap(uint64_t offset, uint64_t bytes, unsigned ignore);
  // Reads the active L1 table (for the overlap checks of the active L2 tables).
  Task<void> load_active_l1();

  // ---- the references the image holds (the in-memory refcount table) ----
  Task<void> calculate();
  void count(uint64_t offset, uint64_t size);
  Task<void> count_l1(uint64_t l1_offset, uint64_t l1_size, bool active);
  Task<void> count_l2(uint64_t l2_offset, bool active);
  Task<Status> read_snapshots();
  Task<void> count_snapshots();
  // -r all: writes the snapshot table read (and repaired) at the start to new clusters and
  // frees the old ones, as QEMU's repair does when the table had to be changed.
  Task<Status> write_snapshot_table();
  // First fit for `count` clusters that nothing references and whose stored refcount is 0,
  // taken with refcount 1; a missing refcount block is created in its own range first.
  // Returns the first cluster. Errors: I/O; ENOSPC when the refcount table has no room.
  Task<Result<uint64_t>> allocate_stored(uint64_t count);
  Task<void> count_bitmaps();
  // Grows the file so that host cluster `cluster` lies inside it, within bounds (check.cc).
  Task<Status> grow_file_to_cover(uint64_t cluster);
  Task<void> count_refblocks();

  // ---- the stored refcounts ----
  Task<Status> load_reftable();
  Task<Result<uint64_t>> stored(uint64_t cluster);
  // What stored() returns when that needs no I/O (the cluster's block is absent or already
  // read); nullopt when it does, or when stored() would report a damaged table entry.
  std::optional<uint64_t> stored_if_cached(uint64_t cluster) const;
  Task<Status> set_stored(uint64_t cluster, uint64_t value);
  Task<Status> write_stored_blocks();
  // Discards (punches out of the file) the clusters whose refcount a repair set to 0, once
  // those refcounts are on disk (qcow2-format.md §17 R5), as QEMU's repair discards what it
  // frees. Discard is advisory: a failure only leaves the data where it was.
  Task<void> discard_freed();

  Task<void> compare(unsigned fix);
  Task<void> check_copied_flags();
  Task<Status> rebuild();
  uint64_t allocate_counted(uint64_t count);
  Task<Status> mark_clean();

  CheckTarget t_;
  const unsigned fix_;
  const uint64_t cs_;
  const uint32_t bits_;
  const uint32_t refcount_bits_;
  const uint64_t entries_per_block_;
  const uint32_t max_refcount_;

  CheckResult res_;
  std::vector<uint32_t> refs_;  // references found, by host cluster
  // The L1 and L2 tables being walked: one buffer for all of each (a damaged image can name
  // the same tables thousands of times).
  std::vector<uint8_t> l1_buf_;
  std::vector<uint8_t> l2_buf_;
  uint64_t nb_clusters_ = 0;  // clusters compared: those inside the file (or counted)
  bool rebuild_ = false;
  bool have_previous_data_ = false;
  uint64_t next_contiguous_ = 0;
  uint64_t highest_cluster_ = 0;
  uint64_t first_free_ = 0;  // allocate_counted() searches from here
  // Clusters a repair set to refcount 0 that nothing references, ascending; discard_freed()
  // punches them once their refcounts are written.
  std::vector<uint64_t> freed_;

  std::vector<Snapshot> snapshots_;
  uint64_t snapshot_table_bytes_ = 0;
  uint64_t snapshot_corruptions_ = 0;  // entries cut or incomplete (-r all rewrites the table)
  uint64_t snapshots_dropped_ = 0;     // overhanging entries -r all dropped

  std::vector<uint64_t> active_l1_;  // raw active L1 entries (overlap checks)
  // The overlap checks' sorted offsets of the active L2 tables and the refcount blocks, built
  // from active_l1_ and reftable_ when stale (set whenever either changes).
  mutable std::vector<uint64_t> l2_index_;
  mutable std::vector<uint64_t> refblock_index_;
  mutable bool overlap_index_stale_ = true;
  // Set when a step failed in a way that ends the check (a refused write): the walk stops.
  std::optional<Error> failed_;

  std::vector<uint64_t> reftable_;  // raw refcount table entries
  std::map<uint64_t, StoredBlock> blocks_;
};

}  // namespace qblock::qcow2::check_internal
