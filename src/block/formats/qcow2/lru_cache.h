// A bounded least-recently-used map from host offsets to shared metadata entries (the L2
// slice cache's bookkeeping). Entries are shared_ptr: whoever holds one pins it, and a pinned
// entry is never offered for eviction. Eviction itself is the owner's job, because writing a
// dirty entry back takes I/O: victim() names the entry to evict, erase() drops it.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <utility>

namespace qblock::qcow2 {

template <typename Entry>
class LruCache {
 public:
  // REQUIRES: capacity > 0.
  explicit LruCache(std::size_t capacity) : capacity_(capacity) {}

  std::size_t capacity() const { return capacity_; }
  std::size_t size() const { return index_.size(); }
  bool full() const { return index_.size() >= capacity_; }

  // The entry at `key`, made the most recently used; nullptr if absent.
  std::shared_ptr<Entry> find(uint64_t key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    it->second->used_in_epoch = epoch_;
    return it->second->entry;
  }
  // Adds `entry` as the most recently used. REQUIRES: `key` absent.
  void insert(uint64_t key, std::shared_ptr<Entry> entry) {
    lru_.push_front(Node{key, std::move(entry), epoch_});
    index_.emplace(key, lru_.begin());
  }
  void erase(uint64_t key) {
    auto it = index_.find(key);
    if (it == index_.end()) return;
    lru_.erase(it->second);
    index_.erase(it);
  }
  // The least recently used entry nobody else holds, or nullopt if every entry is pinned.
  std::optional<uint64_t> victim() const {
    for (auto it = lru_.rbegin(); it != lru_.rend(); ++it) {
      if (it->entry.use_count() == 1) return it->key;
    }
    return std::nullopt;
  }
  // Calls f(key, entry) for every entry, most recently used first. `f` must not change the
  // cache.
  template <typename F>
  void for_each(F&& f) const {
    for (const Node& n : lru_) f(n.key, n.entry);
  }
  // cache-clean-interval: drops the unpinned entries for which `droppable(entry)` holds and
  // that nobody looked up since the previous call, then starts a new interval.
  template <typename F>
  void drop_idle(F&& droppable) {
    for (auto it = lru_.begin(); it != lru_.end();) {
      if (it->used_in_epoch != epoch_ && it->entry.use_count() == 1 && droppable(*it->entry)) {
        index_.erase(it->key);
        it = lru_.erase(it);
      } else {
        ++it;
      }
    }
    ++epoch_;
  }

 private:
  struct Node {
    uint64_t key;
    std::shared_ptr<Entry> entry;
    uint64_t used_in_epoch;
  };
  std::size_t capacity_;
  uint64_t epoch_ = 0;
  std::list<Node> lru_;  // most recently used first
  std::unordered_map<uint64_t, typename std::list<Node>::iterator> index_;
};

}  // namespace qblock::qcow2
