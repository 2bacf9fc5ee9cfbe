// Zero-cluster expansion for the downgrade to compat=0.10 (qcow2-format.md §3.4: v2 has no
// zero flag). Every L2 table reachable from the active or a snapshot's L1 table is rewritten
// once: a preallocated zero cluster that only this table references keeps its host cluster,
// which is zeroed, and loses the flag; a plain zero cluster, and a preallocated one that
// another table (a snapshot's) also references, becomes unallocated without a backing file
// (it then reads as zeros anyway) and a new zeroed cluster with one.
#include <set>
#include <utility>
#include <vector>

#include "base/byte_order.h"
#include "block/formats/qcow2/qcow2_node.h"

namespace qblock::qcow2 {

Task<Status> Qcow2Node::expand_zero_clusters() {
  std::vector<std::vector<uint64_t>> l1_tables;
  l1_tables.push_back(l1_);
  for (const auto& [offset, bytes] : inactive_l1_) {
    std::vector<uint8_t> raw(bytes);
    if (bytes) {
      Status s = co_await file_->read(offset, IoVec(raw.data(), raw.size()));
      if (!s) co_return s;
    }
    std::vector<uint64_t> table(bytes / 8);
    for (uint64_t i = 0; i < table.size(); ++i) table[i] = load_be64(&raw[i * 8]);
    l1_tables.push_back(std::move(table));
  }

  std::set<uint64_t> done;  // L2 tables expanded (a table may be shared between L1 tables)
  std::vector<uint8_t> raw(cs_);
  // §9.1: on an encrypted image a zeroed host cluster decrypts to garbage, so the clusters
  // get encrypted zeros (QEMU 7.2 zeroes them: they then read as garbage, §19).
  AlignedBuffer sealed(encrypted() ? cs_ : 0);
  AlignedBuffer plain_zeros(encrypted() ? cs_ : 0);
  if (encrypted()) plain_zeros.fill(0);
  for (const std::vector<uint64_t>& l1 : l1_tables) {
    for (uint64_t l1i = 0; l1i < l1.size(); ++l1i) {
      const uint64_t l1_entry = l1[l1i];
      const uint64_t l2_offset = l1_entry & kOffsetMask;
      if (!l2_offset || !done.insert(l2_offset).second) continue;
      if (l2_offset % cs_) co_return fail(Error::io());
      Status s = co_await file_->read(l2_offset, IoVec(raw.data(), raw.size()));
      if (!s) co_return s;
      Result<uint64_t> l2_refcount = co_await refcounts_->get(l2_offset / cs_);
      if (!l2_refcount) co_return fail(l2_refcount.error());
      if (*l2_refcount == 0) co_return fail(Error::io());  // QEMU: a corrupt table

      // Host clusters that must read as zeros, with the guest offset they map.
      std::vector<std::pair<uint64_t, uint64_t>> to_zero;
      // Shared host clusters this table stops referencing (each by *l2_refcount).
      std::vector<uint64_t> to_release;
      bool changed = false;
      for (uint64_t i = 0; i < l2_entries_; ++i) {
        const uint64_t entry = load_be64(&raw[i * 8]);
        const ClusterType type = cluster_type(entry);
        if (type != ClusterType::kZeroPlain && type != ClusterType::kZeroAlloc) continue;
        changed = true;
        uint64_t host = entry & kOffsetMask;
        uint64_t refcount = *l2_refcount;
        bool shared = false;  // a preallocated zero cluster another table also maps
        if (type == ClusterType::kZeroAlloc) {
          if (host % cs_) co_return fail(Error::io());
          Result<uint64_t> r = co_await refcounts_->get(host / cs_);
          if (!r) co_return fail(r.error());
          // Zeroing it in place would change what the other table (a snapshot) reads: QEMU
          // 7.2 does, and flags it COPIED (check: "OFLAG_COPIED data cluster").
          shared = *r > *l2_refcount;
          if (shared) to_release.push_back(host);
        }
        if (type == ClusterType::kZeroPlain || shared) {
          if (!backing_) {
            store_be64(&raw[i * 8], 0);
            continue;
          }
          Result<uint64_t> allocated = co_await refcounts_->allocate(1);
          if (!allocated) co_return fail(allocated.error());
          host = *allocated;
          // A table shared by several L1 tables holds one reference per sharer.
          if (*l2_refcount > 1) {
            Status u =
                co_await refcounts_->update(host / cs_, 1, static_cast<int64_t>(*l2_refcount - 1));
            if (!u) co_return u;
          }
        } else {
          if (Status o = co_await refuse_metadata_overlap(host, cs_); !o) co_return o;
        }
        to_zero.emplace_back(host, (l1i * l2_entries_ + i) * cs_);
        store_be64(&raw[i * 8], host | (refcount == 1 ? kCopied : 0));
      }
      if (!changed) continue;
      // §17's order: the new clusters' refcounts and zeros are stable before the table
      // points at them, so a cut in between can only leak.
      if (Status w = co_await refcounts_->write_dirty(); !w) co_return w;
      for (const auto& [host, guest] : to_zero) {
        if (encrypted()) {
          Status e =
              co_await encrypt_copy(guest, host, IoVec(plain_zeros.data(), cs_), sealed.data());
          if (!e) co_return e;
          Status z = co_await file_->write(host, IoVec(sealed.data(), cs_));
          if (!z) co_return z;
          continue;
        }
        Status z = co_await file_->write_zeroes(host, cs_);
        if (!z) co_return z;
      }
      if (!to_zero.empty()) {
        if (Status f = co_await file_->flush(); !f) co_return f;
      }
      s = co_await file_->write(l2_offset, IoVec(raw.data(), raw.size()));
      if (!s) co_return s;
      if (Status f = co_await file_->flush(); !f) co_return f;
      l2_cache_.drop_table(l2_offset);
      // Only now that the table no longer points at them: a cut before this leaks.
      for (uint64_t host : to_release) {
        Status u = co_await refcounts_->update(host / cs_, 1, -static_cast<int64_t>(*l2_refcount));
        if (!u) co_return u;
      }
      if (!to_release.empty()) {
        if (Status w = co_await refcounts_->write_dirty(); !w) co_return w;
      }
    }
  }
  co_return ok();
}

}  // namespace qblock::qcow2
