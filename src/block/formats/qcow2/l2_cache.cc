// The L2 table cache (see l2_cache.h).
#include "block/formats/qcow2/l2_cache.h"

#include "base/byte_order.h"
#include "base/check.h"

namespace qblock::qcow2 {

L2Cache::L2Cache(BlockNode& file, uint64_t cluster_size, uint64_t slice_bytes, std::size_t capacity,
                 uint64_t entry_bytes)
    : file_(file),
      cluster_size_(cluster_size),
      slice_bytes_(slice_bytes),
      entry_bytes_(entry_bytes),
      slices_(capacity) {
  CHECK(slice_bytes_ >= 512 && cluster_size_ % slice_bytes_ == 0);
  CHECK(entry_bytes_ == 8 || entry_bytes_ == 16);
}

void L2Cache::decode(L2Slice& slice, const uint64_t* words, uint64_t count) const {
  const uint64_t stride = entry_bytes_ / 8;
  slice.entries.resize(count / stride);
  if (stride == 2) slice.bitmaps.resize(count / 2);
  for (uint64_t i = 0; i < count / stride; ++i) {
    slice.entries[i] = words[i * stride];
    if (stride == 2) slice.bitmaps[i] = words[i * 2 + 1];
  }
}

Task<Result<L2SliceRef>> L2Cache::get(uint64_t table_offset, uint64_t slice_index) {
  const uint64_t offset = table_offset + slice_index * slice_bytes_;
  if (L2SliceRef hit = slices_.find(offset)) co_return hit;
  co_await file_.debug_event(DebugEvent::kL2Load);
  Status room = co_await make_room();
  if (!room) co_return fail(room.error());
  // make_room() may have suspended, and somebody else may have loaded the slice meanwhile.
  if (L2SliceRef hit = slices_.find(offset)) co_return hit;
  std::vector<uint8_t> raw(slice_bytes_);
  Status s = co_await file_.read(offset, IoVec(raw.data(), raw.size()));
  if (!s) co_return fail(s.error());
  if (L2SliceRef hit = slices_.find(offset)) co_return hit;
  auto slice = std::make_shared<L2Slice>();
  slice->offset = offset;
  slice->table_offset = table_offset;
  slice->first_index = slice_index * slice_entries();
  std::vector<uint64_t> words(slice_bytes_ / 8);
  for (uint64_t i = 0; i < words.size(); ++i) words[i] = load_be64(&raw[i * 8]);
  decode(*slice, words.data(), words.size());
  slices_.insert(offset, slice);
  co_return slice;
}

Task<Status> L2Cache::insert(L2SliceRef slice) {
  Status room = co_await make_room();
  if (!room) co_return room;
  slices_.erase(slice->offset);
  const uint64_t offset = slice->offset;
  slices_.insert(offset, std::move(slice));
  co_return ok();
}

Task<Result<std::vector<uint64_t>>> L2Cache::read_table(uint64_t table_offset) {
  const uint64_t entries = cluster_size_ / 8;
  std::vector<uint8_t> raw(cluster_size_);
  Status s = co_await file_.read(table_offset, IoVec(raw.data(), raw.size()));
  if (!s) co_return fail(s.error());
  std::vector<uint64_t> table(entries);
  for (uint64_t i = 0; i < entries; ++i) table[i] = load_be64(&raw[i * 8]);
  // Cached slices win: they may hold changes the file does not have yet.
  const uint64_t stride = entry_bytes_ / 8;
  slices_.for_each([&](uint64_t, const L2SliceRef& slice) {
    if (slice->table_offset != table_offset) return;
    for (uint64_t i = 0; i < slice->entries.size(); ++i) {
      table[(slice->first_index + i) * stride] = slice->entries[i];
      if (stride == 2) table[(slice->first_index + i) * 2 + 1] = slice->bitmaps[i];
    }
  });
  co_return table;
}

void L2Cache::drop_table(uint64_t table_offset) {
  for (uint64_t off = table_offset; off < table_offset + cluster_size_; off += slice_bytes_) {
    slices_.erase(off);
  }
}

std::vector<L2SliceRef> L2Cache::dirty_slices() const {
  std::vector<L2SliceRef> dirty;
  slices_.for_each([&](uint64_t, const L2SliceRef& slice) {
    if (slice->dirty) dirty.push_back(slice);
  });
  return dirty;
}

Task<Status> L2Cache::write_back(L2Slice& slice) {
  co_await file_.debug_event(DebugEvent::kL2Update);
  std::vector<uint8_t> raw(slice_bytes_);
  const uint64_t stride = entry_bytes_ / 8;
  for (uint64_t i = 0; i < slice.entries.size(); ++i) {
    store_be64(&raw[i * 8 * stride], slice.entries[i]);
    if (stride == 2) store_be64(&raw[i * 16 + 8], slice.bitmaps[i]);
  }
  // Cleared first: a change made while the write is in flight marks it dirty again.
  slice.dirty = false;
  Status s = co_await file_.write(slice.offset, IoVec(raw.data(), raw.size()));
  if (!s) slice.dirty = true;
  co_return s;
}

void L2Cache::drop_idle() {
  slices_.drop_idle([](const L2Slice& slice) { return !slice.dirty; });
}

Task<Status> L2Cache::make_room() {
  while (slices_.full()) {
    std::optional<uint64_t> key = slices_.victim();
    if (!key) co_return ok();  // everything pinned: run over capacity for now
    L2SliceRef victim = slices_.find(*key);
    if (victim->dirty) {
      // §17 R1/R3: the refcounts of the clusters it points at, and the data written into
      // them, are stable before the entries are. write_dirty() ends with a flush.
      Status s = ok();
      if (refcounts_ && refcounts_->dirty()) {
        s = co_await refcounts_->write_dirty();
      } else {
        s = co_await file_.flush();
      }
      if (!s) co_return s;
      s = co_await write_back(*victim);
      if (!s) co_return s;
      if (victim->dirty) continue;  // changed again meanwhile: it stays
    }
    slices_.erase(*key);
  }
  co_return ok();
}

}  // namespace qblock::qcow2
