// qemu_json_filename (see qemu_json_name.h).
#include "block/qemu_json_name.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace qblock {

namespace {

// QEMU's qdict bucket of `key` (tdb_hash, 512 buckets).
unsigned bucket(const std::string& key) {
  uint32_t value = 0x238F13AFu * static_cast<uint32_t>(key.size());
  for (std::size_t i = 0; i < key.size(); ++i) {
    value += static_cast<uint32_t>(static_cast<unsigned char>(key[i])) << (i * 5 % 24);
  }
  return (1103515243u * value + 12345u) % 512;
}

std::string dump(const Options& v) {
  if (v.is_object()) {
    // Within one bucket QEMU puts the later key first.
    std::vector<std::pair<unsigned, std::size_t>> order;
    std::vector<const std::string*> keys;
    for (auto it = v.begin(); it != v.end(); ++it) {
      order.emplace_back(bucket(it.key()), keys.size());
      keys.push_back(&it.key());
    }
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    });
    std::string out = "{";
    for (std::size_t i = 0; i < order.size(); ++i) {
      const std::string& key = *keys[order[i].second];
      if (i) out += ", ";
      out += Options(key).dump() + ": " + dump(v.at(key));
    }
    return out + "}";
  }
  if (v.is_array()) {
    std::string out = "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i) out += ", ";
      out += dump(v[i]);
    }
    return out + "]";
  }
  return v.dump();
}

}  // namespace

std::string qemu_json_filename(const Options& options) { return "json:" + dump(options); }

}  // namespace qblock
