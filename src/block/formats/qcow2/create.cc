// qcow2 image creation (see create.h). The planner replays what QEMU 7.2's create path does on
// a fresh file: cluster 0 header, reftable at cluster 1, refblock at cluster 2, then the L1
// table and (with preallocation) L2 tables and data allocated by a first-fit allocator whose
// refcount blocks are created on demand (qcow2-format.md §15, §16).
#include "block/formats/qcow2/create.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <map>
#include <optional>

#include "base/byte_order.h"
#include "block/driver.h"
#include "block/formats/luks.h"
#include "block/formats/qcow2/header.h"
#include "block/formats/qcow2/subcluster.h"
#include "block/protocols/rbd.h"
#include "block/protocols/rbd_address.h"
#include "qblock/block_backend.h"
#include "qblock/messages.h"
#include "qblock/user_objects.h"

namespace qblock::qcow2 {

namespace {

constexpr uint64_t kOffsetCopied = 1ULL << 63;
// QEMU's file driver sets this extent size hint on every file it creates unless told otherwise.
constexpr uint64_t kDefaultExtentSizeHint = 1 << 20;

Error create_error(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

uint64_t div_round_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// qcow2_refcount_metadata_size: the refcount blocks needed to cover `clusters` clusters plus
// the refcount structures themselves (the fixed point of blocks and table clusters). A
// generous increase (used when the table grows on demand) first adds room for half as many
// table clusters again.
enum class Generous : bool { kNo = false, kYes = true };
uint64_t refblocks_needed(uint64_t clusters, uint64_t cs, uint64_t refcounts_per_block,
                          Generous generous = Generous::kNo) {
  const uint64_t blocks_per_table_cluster = cs / 8;
  uint64_t table = 0, blocks = 0, n = 0, last = 0;
  bool increase = generous == Generous::kYes;
  do {
    last = n;
    blocks = div_round_up(clusters + table + blocks, refcounts_per_block);
    table = div_round_up(blocks, blocks_per_table_cluster);
    n = clusters + blocks + table;
    if (n == last && increase) {
      clusters += div_round_up(table, 2);
      n = 0;
      increase = false;
    }
  } while (n != last);
  return blocks;
}

// QEMU's limit on the L1 table (32 MiB of entries).
constexpr uint64_t kMaxL1Entries = (uint64_t{32} << 20) / 8;
// QEMU's limit on the refcount table (8 MiB of entries).
constexpr uint64_t kMaxReftableEntries = (uint64_t{8} << 20) / 8;

// Replays QEMU's cluster allocation on an empty image (qcow2-format.md §15.3: first fit from
// a moving free-cluster cursor, refcount blocks allocated when a cluster needs one).
class Allocator {
 public:
  Allocator(uint64_t cluster_size, uint32_t refcount_order)
      : cs_(cluster_size),
        refcount_order_(refcount_order),
        refcounts_per_block_(cluster_size * 8 >> refcount_order),
        reftable_(cluster_size / 8, 0) {}

  uint64_t cs() const { return cs_; }
  uint64_t refcounts_per_block() const { return refcounts_per_block_; }
  const std::vector<uint64_t>& reftable() const { return reftable_; }
  uint64_t reftable_offset() const { return reftable_offset_; }
  // Clusters that hold what an abandoned structure left there (a refcount table that was
  // replaced by a larger one): written before everything else, which may overwrite them.
  const std::map<uint64_t, std::vector<uint8_t>>& stale() const { return stale_; }

  // qcow2-format.md §15.1: header at cluster 0, the reftable at cluster 1 describing the
  // first refblock at cluster 2.
  void start_image() {
    set_refcount(0, 1);
    set_refcount(1, 1);
    set_refcount(2, 1);
    reftable_[0] = 2 * cs_;
    reftable_offset_ = cs_;
  }

  uint64_t refcount(uint64_t cluster) const {
    return cluster < refcounts_.size() ? refcounts_[cluster] : 0;
  }
  void set_refcount(uint64_t cluster, uint64_t value) {
    if (cluster >= refcounts_.size()) refcounts_.resize(cluster + 1, 0);
    refcounts_[cluster] = value;
  }
  uint64_t last_used_cluster() const {
    for (uint64_t i = refcounts_.size(); i > 0; --i) {
      if (refcounts_[i - 1]) return i - 1;
    }
    return 0;
  }
  void set_free_index(uint64_t index) { free_index_ = std::min(free_index_, index); }

  // qcow2_alloc_clusters: a free run of n clusters, then its refcounts; searched again
  // whenever counting them had to place a new refcount block (which may have landed there).
  Result<uint64_t> alloc(uint64_t n) {
    for (;;) {
      const uint64_t start = alloc_noref(n);
      Result<Counted> r = count(start, n);
      if (!r) return fail(r.error());
      if (*r == Counted::kAll) return start;
    }
  }

  // qcow2_alloc_clusters_at: marks clusters [start, start + n) used.
  // REQUIRES: they are free.
  Status alloc_at(uint64_t start, uint64_t n) {
    for (;;) {
      Result<Counted> r = count(start, n);
      if (!r) return fail(r.error());
      if (*r == Counted::kAll) return ok();
    }
  }

  // qcow2_refcount_area: new refcount structures at cluster `start` covering everything up to
  // `start + additional` clusters and themselves: a refblock for every index from start's
  // onwards that has none, then a new reftable (just large enough when `exact`, else half as
  // large again), all counted; `hook` puts a block the caller allocated into the new table.
  // The old table is freed and its contents stay on disk. Returns the cluster after the table.
  // Errors: EFBIG when the table would exceed QEMU's limit.
  Result<uint64_t> refcount_area(uint64_t start, uint64_t additional, bool exact,
                                 std::optional<std::pair<uint64_t, uint64_t>> hook) {
    const uint64_t total = refblocks_needed(start + additional, cs_, refcounts_per_block_,
                                            exact ? Generous::kNo : Generous::kYes);
    if (total > kMaxReftableEntries) return fail(Error::with_message(EFBIG, "File too large"));
    const uint64_t per_cluster = cs_ / 8;
    const uint64_t wanted = exact ? total : total + div_round_up(total, 2);
    const uint64_t entries = div_round_up(wanted, per_cluster) * per_cluster;
    if (entries > kMaxReftableEntries) return fail(Error::with_message(EFBIG, "File too large"));
    std::vector<uint64_t> table = reftable_;
    table.resize(entries, 0);
    if (hook) table[hook->first] = hook->second * cs_;
    const uint64_t area_index = start / refcounts_per_block_;
    uint64_t block = start;
    for (uint64_t i = area_index; i < total; ++i) block += table[i] == 0;
    const uint64_t table_cluster = block;
    const uint64_t end = table_cluster + entries / per_cluster;
    block = start;
    for (uint64_t i = area_index; i < total; ++i) {
      if (!table[i]) table[i] = (block++) * cs_;
    }
    for (uint64_t c = start; c < end; ++c) set_refcount(c, 1);
    // The old table's entries as they were last written; its clusters become free.
    std::vector<uint8_t> old(reftable_.size() * 8, 0);
    for (std::size_t i = 0; i < reftable_.size(); ++i) store_be64(&old[i * 8], reftable_[i]);
    const uint64_t old_cluster = reftable_offset_ / cs_;
    for (uint64_t c = old_cluster; c < old_cluster + reftable_.size() / per_cluster; ++c) {
      set_refcount(c, 0);
    }
    set_free_index(old_cluster);
    stale_[old_cluster] = std::move(old);
    reftable_ = std::move(table);
    reftable_offset_ = table_cluster * cs_;
    return end;
  }

  // The refcount block clusters, serialised from the final refcounts.
  std::map<uint64_t, std::vector<uint8_t>> refblocks() const {
    std::map<uint64_t, std::vector<uint8_t>> out;
    const uint32_t bits = 1u << refcount_order_;
    for (uint64_t i = 0; i < reftable_.size(); ++i) {
      if (!reftable_[i]) continue;
      std::vector<uint8_t> block(cs_, 0);
      for (uint64_t j = 0; j < refcounts_per_block_; ++j) {
        uint64_t v = refcount(i * refcounts_per_block_ + j);
        if (!v) continue;
        // qcow2-format.md §5.2: >= 8 bits big-endian; narrower widths packed from bit 0.
        if (bits >= 8) {
          for (uint32_t k = 0; k < bits / 8; ++k) {
            block[j * bits / 8 + k] = static_cast<uint8_t>(v >> (bits - 8 - 8 * k));
          }
        } else {
          uint64_t bit = j * bits;
          block[bit / 8] |= static_cast<uint8_t>(v << (bit % 8));
        }
      }
      out[reftable_[i] / cs_] = std::move(block);
    }
    return out;
  }

 private:
  uint64_t alloc_noref(uint64_t n) {
    for (;;) {
      uint64_t start = free_index_;
      uint64_t i = 0;
      for (; i < n; ++i) {
        if (refcount(free_index_++) != 0) break;
      }
      if (i == n) return start;
    }
  }

  // QEMU's update_refcount (+1) and alloc_refcount_block: a cluster whose refcount block
  // does not exist yet gets one, and then the whole update stops and is undone (QEMU's
  // -EAGAIN), because the new block may sit where the caller meant to put its clusters; the
  // caller searches again. Reproducing this is what puts every structure where qemu-img puts it.
  enum class Counted : bool { kAll, kStartOver };
  Result<Counted> count(uint64_t start, uint64_t n) {
    for (uint64_t c = start; c < start + n; ++c) {
      const uint64_t index = c / refcounts_per_block_;
      if (index < reftable_.size() && reftable_[index]) {
        set_refcount(c, refcount(c) + 1);
        continue;
      }
      if (Status s = alloc_refcount_block(c); !s) return fail(s.error());
      for (uint64_t u = start; u < c; ++u) {
        set_refcount(u, refcount(u) - 1);
        if (refcount(u) == 0) set_free_index(u);
      }
      // The search starts again at the same clusters: they may still be free.
      set_free_index(start);
      return Counted::kStartOver;
    }
    return Counted::kAll;
  }

  // The new block describes itself when it falls in the range it covers; otherwise its own
  // refcount is counted first, which may itself have to start over (the block then stays
  // unused). A table too small for the block is replaced by a larger one placed past
  // everything counted so far, at the start of the first range no block covers (§5.3).
  Status alloc_refcount_block(uint64_t cluster) {
    const uint64_t index = cluster / refcounts_per_block_;
    const uint64_t block = alloc_noref(1);
    if (block / refcounts_per_block_ == index) {
      set_refcount(block, 1);
    } else {
      Result<Counted> r = count(block, 1);
      if (!r) return fail(r.error());
      if (*r == Counted::kStartOver) return ok();
    }
    if (index < reftable_.size()) {
      reftable_[index] = block * cs_;
      return ok();
    }
    const uint64_t blocks_used =
        div_round_up(std::max(cluster + 1, block + 1), refcounts_per_block_);
    Result<uint64_t> end =
        refcount_area(blocks_used * refcounts_per_block_, 0, false, std::pair{index, block});
    if (!end) return fail(end.error());
    return ok();
  }

  uint64_t cs_;
  uint32_t refcount_order_;
  uint64_t refcounts_per_block_;
  std::vector<uint64_t> reftable_;  // byte offsets of refcount blocks
  uint64_t reftable_offset_ = 0;
  std::map<uint64_t, std::vector<uint8_t>> stale_;
  std::vector<uint64_t> refcounts_;
  uint64_t free_index_ = 0;
};

unsigned log2_exact(uint64_t v) {
  unsigned bits = 0;
  while ((1ULL << bits) < v) ++bits;
  return bits;
}

bool is_power_of_two(uint64_t v) { return v && !(v & (v - 1)); }

}  // namespace

Status validate_file_options(const FileCreateOptions& file) {
  if (file.extent_size_hint && *file.extent_size_hint > UINT32_MAX) {
    return fail(create_error("Extent size hint is too large"));
  }
  return ok();
}

Status validate_create_options(const Qcow2CreateOptions& o) {
  if (!is_power_of_two(o.cluster_size) || o.cluster_size < 512 || o.cluster_size > (2 << 20)) {
    return fail(create_error("Cluster size must be a power of two between 512 and 2048k"));
  }
  if (o.extended_l2) {
    if (o.version < 3) {
      return fail(create_error(
          "Extended L2 entries are only supported with compatibility level 1.1 and above (use "
          "version=v3 or greater)"));
    }
    if (o.cluster_size < 16384) {
      return fail(create_error(
          "Extended L2 entries are only supported with cluster sizes of at least 16384 bytes"));
    }
  }
  if (o.version < 3 && o.lazy_refcounts) {
    return fail(create_error(
        "Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 "
        "or greater)"));
  }
  if (!is_power_of_two(o.refcount_bits) || o.refcount_bits > 64) {
    return fail(create_error("Refcount width must be a power of two and may not exceed 64 bits"));
  }
  if (o.version < 3 && o.refcount_bits != 16) {
    return fail(create_error(
        "Different refcount widths than 16 bits require compatibility level 1.1 or above (use "
        "version=v3 or greater)"));
  }
  if (!o.backing_file.empty() && o.preallocation != PreallocMode::kOff && !o.extended_l2) {
    return fail(create_error(
        "Backing file and preallocation can only be used at the same time if extended_l2 is "
        "on"));
  }
  // §10, as qemu-img 7.2 (which checks them after creating the data file, and then deletes
  // it again: qblock touches no file before the options are valid).
  if (o.data_file_raw && o.data_file.empty()) {
    return fail(create_error("data-file-raw requires data-file"));
  }
  if (o.data_file_raw && !o.backing_file.empty()) {
    return fail(create_error("Backing file and data-file-raw cannot be used at the same time"));
  }
  if (!o.data_file.empty() && o.version < 3) {
    return fail(create_error(
        "External data files are only supported with compatibility level 1.1 and above (use "
        "version=v3 or greater)"));
  }
  if (o.version < 3 && o.compression_type != 0) {
    return fail(create_error(
        "Non-zlib compression type is only supported with compatibility level 1.1 and above "
        "(use version=v3 or greater)"));
  }
  if (!o.encrypt_format.empty()) {
    if (o.encrypt_format != "aes" && o.encrypt_format != "luks") {
      return fail(
          create_error("Parameter 'format' does not accept value '" + o.encrypt_format + "'"));
    }
    if (!o.encrypt.key_secret) {
      return fail(create_error("Parameter 'encrypt.key-secret' is required for cipher"));
    }
    Result<SecretBytes> password = user_objects().secret(*o.encrypt.key_secret);
    if (!password) return fail(password.error());
    if (o.encrypt_format == "luks") {
      if (Status s = check_luks_image_options(o.encrypt); !s) return s;
    }
  }
  return ok();
}

Result<CryptArea> prepare_crypt_area(const Qcow2CreateOptions& o) {
  CryptArea area;
  if (o.encrypt_format.empty()) return area;
  if (o.encrypt_format == "aes") {
    area.method = 1;  // §9.2: no key material in the image
    return area;
  }
  Result<crypto::LuksFormatted> volume = format_luks(o.encrypt);
  if (!volume) return fail(volume.error());
  area.method = 2;
  area.length = uint64_t{volume->header.payload_offset} * crypto::kSectorSize;
  // The whole area is written, zeros included, as qemu-img writes it.
  area.data.assign(area.length, 0);
  std::copy(volume->header_bytes.begin(), volume->header_bytes.end(), area.data.begin());
  const uint64_t key_at = uint64_t{volume->header.slots[0].key_offset} * crypto::kSectorSize;
  std::copy(volume->key_material.begin(), volume->key_material.end(),
            area.data.begin() + static_cast<std::ptrdiff_t>(key_at));
  return area;
}

Result<Qcow2Layout> plan_qcow2_layout(const Qcow2CreateOptions& o, uint64_t size,
                                      const CryptArea& crypt) {
  // QEMU stores the virtual size rounded up to whole sectors (observed with qemu-img 7.2).
  size = div_round_up(size, 512) * 512;
  const uint64_t cs = o.cluster_size;
  const unsigned cluster_bits = log2_exact(cs);
  const uint32_t refcount_order = log2_exact(o.refcount_bits);
  const uint64_t entry_size = o.extended_l2 ? 16 : 8;
  const uint64_t l2_entries = cs / entry_size;
  Allocator alloc(cs, refcount_order);

  alloc.start_image();

  // Growing the L1 table to the virtual size (§3.1: exactly the minimum number of entries).
  const uint64_t l1_size = div_round_up(size, l2_entries * cs);
  uint64_t l1_offset = 0;
  // QEMU's limit on the L1 table (32 MiB); EFBIG is worded by the tools ("The image size is
  // too large for file format 'qcow2' ...").
  if (l1_size > kMaxL1Entries) return fail(Error::with_message(EFBIG, "File too large"));
  if (l1_size) {
    Result<uint64_t> c = alloc.alloc(div_round_up(l1_size * 8, cs));
    if (!c) return fail(c.error());
    l1_offset = *c * cs;
  }
  // §9.3: the LUKS area is allocated right after the L1 table (observed with qemu-img 7.2).
  uint64_t crypt_offset = 0;
  if (crypt.method == 2) {
    Result<uint64_t> c = alloc.alloc(div_round_up(crypt.length, cs));
    if (!c) return fail(c.error());
    crypt_offset = *c * cs;
  }
  std::vector<uint8_t> l1(l1_size * 8, 0);
  std::map<uint64_t, std::vector<uint8_t>> l2_tables;  // cluster index -> table
  uint64_t data_end = 0;                               // preallocated data, end offset
  uint64_t data_start = 0;
  const uint64_t data_clusters = div_round_up(size, cs);

  auto l2_entry_ref = [&](uint64_t l2_cluster, uint64_t index) {
    return l2_tables[l2_cluster].data() + index * entry_size;
  };

  // The L2 table (its cluster number) that maps guest cluster `guest`: allocated and linked
  // into the L1 table on first use.
  auto l2_table_for = [&](uint64_t guest) -> Result<uint64_t> {
    const uint64_t l1_index = guest / l2_entries;
    const uint64_t linked = (load_be64(&l1[l1_index * 8]) & 0x00fffffffffffe00ULL) / cs;
    if (linked) return linked;
    Result<uint64_t> c = alloc.alloc(1);
    if (!c) return fail(c.error());
    l2_tables[*c].assign(cs, 0);
    store_be64(&l1[l1_index * 8], (*c * cs) | kOffsetCopied);
    return *c;
  };

  const bool data_file = !o.data_file.empty();
  if (data_file && (o.preallocation != PreallocMode::kOff || o.data_file_raw) && data_clusters) {
    // §10: the L2 tables, one after another, mapping each cluster 1:1 into the data file
    // (observed with qemu-img 7.2 for data_file_raw=on and every preallocation mode).
    for (uint64_t guest = 0; guest < data_clusters; ++guest) {
      Result<uint64_t> table = l2_table_for(guest);
      if (!table) return fail(table.error());
      const uint64_t l2_cluster = *table;
      store_be64(l2_entry_ref(l2_cluster, guest % l2_entries), (guest * cs) | kOffsetCopied);
    }
  } else if (data_file) {
    // Nothing preallocated: the data file alone is.
  } else if (o.preallocation == PreallocMode::kMetadata && data_clusters) {
    // preallocate_co: per L2 table, the table first, then its data clusters in chunks of at
    // most INT_MAX bytes (§16).
    const uint64_t max_chunk = INT_MAX / cs;
    uint64_t guest = 0;
    while (guest < data_clusters) {
      Result<uint64_t> table = l2_table_for(guest);
      if (!table) return fail(table.error());
      const uint64_t l2_cluster = *table;
      const uint64_t in_table = l2_entries - guest % l2_entries;
      const uint64_t n = std::min({data_clusters - guest, in_table, max_chunk});
      Result<uint64_t> d = alloc.alloc(n);
      if (!d) return fail(d.error());
      for (uint64_t i = 0; i < n; ++i) {
        store_be64(l2_entry_ref(l2_cluster, (guest + i) % l2_entries),
                   ((*d + i) * cs) | kOffsetCopied);
      }
      data_end = std::max(data_end, (*d + n) * cs);
      guest += n;
    }
  } else if ((o.preallocation == PreallocMode::kFalloc || o.preallocation == PreallocMode::kFull) &&
             data_clusters) {
    // qcow2_co_truncate for falloc/full: new refcount structures for the final size are
    // written after the current end (refblocks, then a new reftable), the old reftable is
    // freed, the data area follows, and L2 tables take the lowest free clusters (§16).
    const uint64_t start = alloc.last_used_cluster() + 1;
    const uint64_t new_l2 = div_round_up(data_clusters, l2_entries) + 1;
    Result<uint64_t> area = alloc.refcount_area(start, data_clusters + new_l2, true, std::nullopt);
    if (!area) return fail(area.error());
    const uint64_t end = *area;
    if (Status s = alloc.alloc_at(end, data_clusters); !s) return fail(s.error());
    data_start = end * cs;
    data_end = (end + data_clusters) * cs;
    for (uint64_t guest = 0; guest < data_clusters; ++guest) {
      Result<uint64_t> table = l2_table_for(guest);
      if (!table) return fail(table.error());
      const uint64_t l2_cluster = *table;
      store_be64(l2_entry_ref(l2_cluster, guest % l2_entries),
                 ((end + guest) * cs) | kOffsetCopied);
    }
  }

  Header h;
  h.version = o.version;
  h.cluster_bits = cluster_bits;
  h.size = size;
  h.l1_size = static_cast<uint32_t>(l1_size);
  h.l1_table_offset = l1_offset;
  h.refcount_table_offset = alloc.reftable_offset();
  h.refcount_table_clusters = static_cast<uint32_t>(alloc.reftable().size() * 8 / cs);
  h.backing_file = o.backing_file;
  h.backing_format = o.backing_fmt;
  h.crypt_method = crypt.method;
  if (crypt.method == 2) h.crypto_header = {crypt_offset, crypt.length};
  if (o.version >= 3) {
    h.refcount_order = refcount_order;
    h.compression_type = o.compression_type;
    if (o.compression_type) h.incompatible_features |= kIncompatCompression;
    if (o.extended_l2) h.incompatible_features |= kIncompatExtendedL2;
    if (o.lazy_refcounts) h.compatible_features |= kCompatLazyRefcounts;
    if (data_file) {
      h.incompatible_features |= kIncompatDataFile;
      h.data_file = o.data_file;
      if (o.data_file_raw) h.autoclear_features |= kAutoclearDataFileRaw;
    }
    // qcow2-format.md §4.3: the feature table only for clusters larger than 4 KiB.
    if (cs > 4096) {
      h.has_feature_table = true;
      h.feature_names = default_feature_names();
    }
  } else {
    h.header_length = 72;
  }
  Result<std::vector<uint8_t>> header = serialize_header(h);
  if (!header) return fail(header.error());

  Qcow2Layout layout;
  std::map<uint64_t, std::vector<uint8_t>> clusters = alloc.refblocks();
  for (const auto& [c, bytes] : alloc.stale()) clusters.emplace(c, bytes);
  std::vector<uint8_t> reftable(alloc.reftable().size() * 8, 0);
  for (std::size_t i = 0; i < alloc.reftable().size(); ++i) {
    store_be64(&reftable[i * 8], alloc.reftable()[i]);
  }
  header->resize(cs, 0);
  clusters[0] = std::move(*header);
  clusters[alloc.reftable_offset() / cs] = std::move(reftable);
  for (auto& [c, table] : l2_tables) clusters[c] = std::move(table);
  if (l1_size) clusters[l1_offset / cs] = std::move(l1);  // may span several clusters
  for (auto& [c, bytes] : clusters) {
    layout.file_size = std::max(layout.file_size, c * cs + bytes.size());
    layout.writes.push_back({c * cs, std::move(bytes)});
  }
  // The LUKS area, its last cluster whole in the file (as qemu-img sizes it).
  if (crypt.method == 2) {
    layout.writes.push_back({crypt_offset, crypt.data});
    layout.file_size =
        std::max(layout.file_size, div_round_up(crypt_offset + crypt.length, cs) * cs);
  }
  std::sort(layout.writes.begin(), layout.writes.end(),
            [](const PlannedWrite& a, const PlannedWrite& b) { return a.offset < b.offset; });
  layout.file_size = std::max(layout.file_size, data_end);
  layout.data_start = data_start;
  layout.data_end = data_start ? data_end : 0;
  return layout;
}

namespace {

Task<Result<uint64_t>> backing_length(EventLoop& loop, std::string filename, std::string format) {
  BackendOptions bo;
  bo.filename = std::move(filename);
  bo.format = std::move(format);
  bo.flags.read_only = true;
  Result<std::unique_ptr<BlockBackend>> backend = co_await BlockBackend::open(loop, bo);
  if (!backend) co_return fail(backend.error());
  const uint64_t length = (*backend)->length();
  Status closed = co_await (*backend)->close();
  if (!closed) co_return fail(closed.error());
  co_return length;
}

// Opens the image file for writing, creating it if it does not exist, and empties it, in
// that order: its write lock is taken before anything is truncated, so an image another
// process (or this one, e.g. convert's source) holds stays as it is, as with qemu-img. A file
// this call created is removed again if it cannot be opened.
// What QEMU's file driver does to a file it has just created (emptied): the extent size
// hint and the no-COW flag, both best effort.
void apply_file_options(const std::string& filename, const FileCreateOptions& file) {
  const int fd = ::open(filename.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (file.nocow) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
      flags |= FS_NOCOW_FL;
      (void)ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
  }
  const uint64_t hint = file.extent_size_hint.value_or(kDefaultExtentSizeHint);
  fsxattr attr{};
  int r = ioctl(fd, FS_IOC_FSGETXATTR, &attr);
  if (r == 0) {
    attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
    attr.fsx_extsize = static_cast<uint32_t>(hint);
    r = ioctl(fd, FS_IOC_FSSETXATTR, &attr);
  }
  if (r < 0 && file.extent_size_hint && hint) {
    emit_message(MessageLevel::kWarning,
                 std::string("Failed to set extent size hint: ") + std::strerror(errno));
  }
  ::close(fd);
}

Task<Result<NodePtr>> open_emptied_file(EventLoop& loop, std::string filename,
                                        FileCreateOptions file) {
  if (rbd_client::has_rbd_prefix(filename)) {
    // An RBD image: created empty (it grows with the writes), as qemu-img does; an existing
    // one is an error ("error rbd create: File exists").
    Status created = co_await create_rbd_image(loop, filename, 0);
    if (!created) co_return fail(created.error());
    Options options = Options::object();
    options["driver"] = "rbd";
    options["filename"] = filename;
    Result<NodePtr> node = co_await open_node(loop, std::move(options), OpenFlags{}, "rbd");
    if (!node) co_await remove_rbd_image(loop, filename);
    co_return node;
  }
  int fd = ::open(filename.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  const bool created = fd >= 0;
  if (!created && errno == EEXIST) fd = ::open(filename.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) co_return fail(Error::from_errno(errno, "Could not create '" + filename + "'"));
  ::close(fd);
  Options options = Options::object();
  options["driver"] = "file";
  options["filename"] = filename;
  Result<NodePtr> node = co_await open_node(loop, std::move(options), OpenFlags{}, "file");
  if (!node) {
    if (created) ::unlink(filename.c_str());
    co_return fail(node.error());
  }
  Status emptied = co_await (*node)->truncate(0, PreallocMode::kOff);
  if (!emptied) {
    (void)co_await (*node)->close();
    co_return fail(emptied.error());
  }
  apply_file_options(filename, file);
  co_return std::move(*node);
}

// A failed growth of the file in qemu-img 7.2's words: its create grows a preallocated image
// by resizing it ("Could not resize image: "), which in turn resizes the file ("Failed to
// resize underlying file: " for falloc/full). qemu-img create words EFBIG its own way.
Error resize_failed(const Error& e, bool underlying) {
  return Error::with_message(
      e.errnum(), std::string("Could not resize image: ") +
                      (underlying ? "Failed to resize underlying file: " : "") + e.message());
}

Task<Status> write_layout(BlockNode& node, Qcow2Layout layout, PreallocMode mode) {
  if (layout.data_start) {
    // falloc/full: the file node allocates the data area as asked (§16) before the metadata
    // goes around it: L2 tables may follow the data area, as QEMU allocates them after it.
    Status s = co_await node.truncate(layout.data_start, PreallocMode::kOff);
    if (!s) co_return fail(resize_failed(s.error(), true));
    Status grown = co_await node.truncate(layout.data_end, mode);
    if (!grown) co_return fail(resize_failed(grown.error(), true));
  }
  for (PlannedWrite& w : layout.writes) {
    IoVec qiov(w.data.data(), w.data.size());
    Status s = co_await node.write(w.offset, std::move(qiov));
    if (!s) co_return s;
  }
  if (node.length() < layout.file_size) {
    Status s = co_await node.truncate(layout.file_size, PreallocMode::kOff);
    if (!s) co_return fail(resize_failed(s.error(), false));
  }
  co_return co_await node.flush();
}

}  // namespace

Task<Status> create_qcow2(EventLoop& loop, Qcow2CreateOptions opts) {
  if (Status s = validate_create_options(opts); !s) co_return s;
  if (Status s = validate_file_options(opts.file); !s) co_return s;
  uint64_t size = 0;
  if (opts.size) {
    size = *opts.size;
  } else if (!opts.backing_file.empty() && !opts.unsafe_backing) {
    Result<uint64_t> length = co_await backing_length(loop, opts.backing_file, opts.backing_fmt);
    if (!length) {
      co_return fail(Error::with_message(
          length.error().errnum(), length.error().message() + "\nCould not open backing image."));
    }
    size = *length;
  } else {
    co_return fail(create_error("Image creation needs a size parameter"));
  }
  Result<CryptArea> crypt = prepare_crypt_area(opts);
  if (!crypt) co_return fail(crypt.error());
  Result<Qcow2Layout> layout = plan_qcow2_layout(opts, size, *crypt);
  if (!layout) co_return fail(layout.error());
  if (!opts.data_file.empty()) {
    // §10: a raw image of the virtual size, created first as qemu-img creates it (its name
    // as given, relative to the working directory).
    const PreallocMode mode =
        opts.preallocation == PreallocMode::kMetadata ? PreallocMode::kOff : opts.preallocation;
    // With its L2 tables preallocated the data file covers the last cluster whole (with
    // extended L2 entries its last subcluster), as qemu-img 7.2's (observed) does.
    const bool mapped = opts.preallocation != PreallocMode::kOff || opts.data_file_raw;
    const uint64_t unit = opts.extended_l2 ? opts.cluster_size / kSubclusters : opts.cluster_size;
    const uint64_t data_size = mapped ? (size + unit - 1) / unit * unit : size;
    Status created =
        co_await create_raw(loop, opts.data_file, data_size, mode, FileCreateOptions{});
    if (!created) co_return created;
  }
  Result<NodePtr> node = co_await open_emptied_file(loop, opts.filename, opts.file);
  if (!node) co_return fail(node.error());
  Status written = co_await write_layout(**node, std::move(*layout), opts.preallocation);
  Status closed = co_await (*node)->close();
  if (!written || !closed) {
    // A half-written image is no image: it goes, as qemu-img's qcow2 creation removes it.
    if (rbd_client::has_rbd_prefix(opts.filename)) {
      co_await remove_rbd_image(loop, opts.filename);
    } else {
      ::unlink(opts.filename.c_str());
    }
    co_return written ? closed : written;
  }
  co_return ok();
}

Task<Status> create_qcow2_on_node(BlockNode& node, Qcow2CreateOptions opts) {
  if (Status s = validate_create_options(opts); !s) co_return s;
  // A data file needs a name to create it by: not supported on a given node.
  if (!opts.data_file.empty()) co_return fail(Error::unsupported());
  if (!opts.size) co_return fail(create_error("Image creation needs a size parameter"));
  Result<CryptArea> crypt = prepare_crypt_area(opts);
  if (!crypt) co_return fail(crypt.error());
  Result<Qcow2Layout> layout = plan_qcow2_layout(opts, *opts.size, *crypt);
  if (!layout) co_return fail(layout.error());
  Status emptied = co_await node.truncate(0, PreallocMode::kOff);
  if (!emptied) co_return emptied;
  Status written = co_await write_layout(node, std::move(*layout), opts.preallocation);
  if (!written) (void)co_await node.truncate(0, PreallocMode::kOff);
  co_return written;
}

Task<Status> create_raw(EventLoop& loop, std::string filename, uint64_t size,
                        PreallocMode preallocation, FileCreateOptions file) {
  if (Status s = validate_file_options(file); !s) co_return s;
  if (preallocation == PreallocMode::kMetadata) {
    co_return fail(Error::with_message(ENOTSUP, "Unsupported preallocation mode: metadata"));
  }
  if (rbd_client::has_rbd_prefix(filename)) {
    // QEMU's rbd driver creates the image at its size, unrounded.
    if (preallocation != PreallocMode::kOff) {
      co_return fail(Error::with_message(ENOTSUP, "Unsupported preallocation mode"));
    }
    co_return co_await create_rbd_image(loop, filename, size);
  }
  Result<NodePtr> node = co_await open_emptied_file(loop, filename, file);
  if (!node) co_return fail(node.error());
  // Whole sectors, as QEMU's file driver creates them (`create -f raw x 100` makes 512 bytes).
  size = (size + 511) / 512 * 512;
  Status grown = co_await (*node)->truncate(size, preallocation);
  // A preallocation that failed half-way is undone, leaving the empty file qemu-img leaves.
  if (!grown) (void)co_await (*node)->truncate(0, PreallocMode::kOff);
  Status closed = co_await (*node)->close();
  if (!grown) co_return grown;
  co_return closed;
}

}  // namespace qblock::qcow2
