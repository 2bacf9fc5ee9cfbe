// Changing the refcount width (qemu-img amend -o refcount_bits=N; qcow2-format.md §5): every
// refcount is read at the old width, a new refcount table and new blocks are allocated where
// QEMU puts them (first fit, through the old structures, so that they count themselves),
// written and flushed; then the header switches to them, and last the old table and blocks
// are freed in the new structures.
#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

namespace {

uint64_t div_round_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

}  // namespace

Task<Status> Qcow2Node::change_refcount_order(uint32_t order) {
  const uint32_t old_bits = header_.refcount_bits();
  const uint32_t new_bits = 1u << order;
  const uint64_t old_per_block = cs_ * 8 / old_bits;
  const uint64_t new_per_block = cs_ * 8 / new_bits;

  // The refcounts as they are, by host cluster index (up to the last non-zero one), to
  // refuse a width too narrow before anything changes.
  const uint64_t old_table_offset = header_.refcount_table_offset;
  const uint64_t old_table_clusters = header_.refcount_table_clusters;
  std::vector<uint8_t> old_table(old_table_clusters * cs_);
  Status s = co_await file_->read(old_table_offset, IoVec(old_table.data(), old_table.size()));
  if (!s) co_return s;
  std::vector<uint64_t> counts;
  std::vector<uint8_t> block(cs_);
  for (uint64_t t = 0; t < old_table.size() / 8; ++t) {
    const uint64_t offset = load_be64(&old_table[t * 8]) & kRefTableOffsetMask;
    if (!offset) continue;
    if (offset % cs_) co_return fail(Error::io());
    s = co_await file_->read(offset, IoVec(block.data(), block.size()));
    if (!s) co_return s;
    for (uint64_t j = 0; j < old_per_block; ++j) {
      const uint64_t v = read_refcount_entry(block.data(), old_bits, j);
      if (!v) continue;
      const uint64_t index = t * old_per_block + j;
      if (counts.size() <= index) counts.resize(index + 1, 0);
      counts[index] = v;
    }
  }
  const uint64_t max_refcount = new_bits == 64 ? ~uint64_t{0} : (uint64_t{1} << new_bits) - 1;
  for (uint64_t i = 0; i < counts.size(); ++i) {
    if (counts[i] > max_refcount) {
      co_return fail(Error::with_message(
          EINVAL, fmt::format("Cannot decrease refcount entry width to {} bits: Cluster at "
                              "offset {:#x} has a refcount of {}",
                              new_bits, i * cs_, counts[i])));
    }
  }

  // Place the new blocks and table as QEMU does: walk the refcounts in cluster order and
  // allocate (through the old structures, so that they count themselves and a cut before the
  // switch only leaks them) a block for each new block's range that holds a refcount, then a
  // table for them; repeat while the allocations themselves need more.
  std::map<uint64_t, uint64_t> new_blocks;  // new block index -> host offset
  uint64_t end = counts.size();
  uint64_t table_offset = 0;
  uint64_t table_clusters = 0;
  for (bool allocated = true; allocated;) {
    allocated = false;
    for (uint64_t i = 0; i < end; ++i) {
      if (new_blocks.count(i / new_per_block)) {
        i = (i / new_per_block + 1) * new_per_block - 1;
        continue;
      }
      Result<uint64_t> rc = co_await refcounts_->get(i);
      if (!rc) co_return fail(rc.error());
      if (!*rc) continue;
      Result<uint64_t> block_offset = co_await refcounts_->allocate(1);
      if (!block_offset) co_return fail(block_offset.error());
      new_blocks[i / new_per_block] = *block_offset;
      end = std::max(end, *block_offset / cs_ + 1);
      allocated = true;
    }
    if (!allocated) break;
    if (table_clusters) {
      Status u = co_await refcounts_->update(table_offset / cs_, table_clusters, -1);
      if (!u) co_return u;
    }
    table_clusters = div_round_up((new_blocks.rbegin()->first + 1) * 8, cs_);
    Result<uint64_t> t = co_await refcounts_->allocate(table_clusters);
    if (!t) co_return fail(t.error());
    table_offset = *t;
    end = std::max(end, table_offset / cs_ + table_clusters);
  }
  if (table_clusters > UINT32_MAX) co_return fail(Error::from_errno(EFBIG));
  if (Status w = co_await refcounts_->write_dirty(); !w) co_return w;

  // The new blocks hold the refcounts as they are now (the old structures included: they
  // are freed after the switch).
  for (const auto& [index, offset] : new_blocks) {
    std::fill(block.begin(), block.end(), 0);
    for (uint64_t j = 0; j < new_per_block && index * new_per_block + j < end; ++j) {
      Result<uint64_t> rc = co_await refcounts_->get(index * new_per_block + j);
      if (!rc) co_return fail(rc.error());
      if (*rc > max_refcount) co_return fail(Error::io());
      write_refcount_entry(block.data(), new_bits, j, *rc);
    }
    s = co_await file_->write(offset, IoVec(block.data(), block.size()));
    if (!s) co_return s;
  }
  std::vector<uint8_t> table(table_clusters * cs_, 0);
  for (const auto& [index, offset] : new_blocks) store_be64(&table[index * 8], offset);
  s = co_await file_->write(table_offset, IoVec(table.data(), table.size()));
  if (!s) co_return s;
  if (Status f = co_await file_->flush(); !f) co_return f;

  // The old structures as they are after the allocations above: freed once unused.
  const uint64_t old_offset = header_.refcount_table_offset;
  const uint64_t old_clusters = header_.refcount_table_clusters;
  std::vector<uint8_t> old(old_clusters * cs_);
  s = co_await file_->read(old_offset, IoVec(old.data(), old.size()));
  if (!s) co_return s;

  // The switch: one header write.
  header_.refcount_order = order;
  header_.refcount_table_offset = table_offset;
  header_.refcount_table_clusters = static_cast<uint32_t>(table_clusters);
  Result<std::vector<uint8_t>> raw = serialize_header(header_);
  if (!raw) co_return fail(raw.error());
  raw->resize(cs_, 0);
  s = co_await file_->write(0, IoVec(raw->data(), raw->size()));
  if (!s) co_return s;
  if (Status f = co_await file_->flush(); !f) co_return f;

  // The old table and blocks only leak now; free them in the new structures (not discarded,
  // as QEMU leaves their bytes).
  replace_refcounts();
  if (Status l = co_await refcounts_->load(); !l) co_return l;
  for (uint64_t t = 0; t < old.size() / 8; ++t) {
    const uint64_t offset = load_be64(&old[t * 8]) & kRefTableOffsetMask;
    if (!offset) continue;
    Status u = co_await refcounts_->update(offset / cs_, 1, -1);
    if (!u) co_return u;
  }
  Status u = co_await refcounts_->update(old_offset / cs_, old_clusters, -1);
  if (!u) co_return u;
  co_return co_await refcounts_->write_dirty();
}

}  // namespace qblock::qcow2
