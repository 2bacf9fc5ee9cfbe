// qcow2 header parsing and serialisation (see header.h).
#include "block/formats/qcow2/header.h"

#include <fmt/format.h>

#include <cstring>

#include "base/byte_order.h"

namespace qblock::qcow2 {

namespace {

constexpr uint32_t kV2HeaderLength = 72;
constexpr uint32_t kV3MinHeaderLength = 104;
constexpr uint32_t kKnownHeaderLength = 112;
constexpr uint64_t kMaxRefcountTableBytes = 8ULL << 20;  // QCOW_MAX_REFTABLE_SIZE
constexpr uint32_t kMaxBackingNameLength = 1023;

Error open_error(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

Status parse_extensions(const uint8_t* buf, std::size_t len, uint64_t start, uint64_t end,
                        Header& h) {
  uint64_t pos = start;
  while (pos + 8 <= end) {
    uint32_t type = load_be32(buf + pos);
    uint32_t ext_len = load_be32(buf + pos + 4);
    pos += 8;
    if (type == kExtEnd) return ok();
    if (ext_len > end - pos || pos + ext_len > len) {
      return fail(open_error("Header extension too large"));
    }
    const uint8_t* data = buf + pos;
    switch (type) {
      case kExtBackingFormat:
        if (ext_len >= 16) {
          return fail(open_error(
              fmt::format("ERROR: ext_backing_format: len={} too large (>=16)", ext_len)));
        }
        h.backing_format.assign(reinterpret_cast<const char*>(data), ext_len);
        break;
      case kExtFeatureTable:
        h.has_feature_table = true;
        for (uint32_t i = 0; i + 48 <= ext_len; i += 48) {
          const char* name = reinterpret_cast<const char*>(data + i + 2);
          h.feature_names.push_back({data[i], data[i + 1], std::string(name, strnlen(name, 46))});
        }
        break;
      case kExtCryptoHeader:
        if (ext_len != 16) return fail(open_error("Invalid encryption header extension length"));
        h.crypto_header = {load_be64(data), load_be64(data + 8)};
        break;
      case kExtBitmaps: h.bitmaps = std::vector<uint8_t>(data, data + ext_len); break;
      case kExtDataFile: h.data_file.assign(reinterpret_cast<const char*>(data), ext_len); break;
      default:
        h.unknown_extensions.push_back({type, std::vector<uint8_t>(data, data + ext_len)});
        break;
    }
    pos += align_up(ext_len, 8);
  }
  return ok();
}

}  // namespace

std::vector<FeatureName> default_feature_names() {
  return {
      {0, 0, "dirty bit"},        {0, 1, "corrupt bit"},         {0, 2, "external data file"},
      {0, 3, "compression type"}, {0, 4, "extended L2 entries"}, {1, 0, "lazy refcounts"},
      {2, 0, "bitmaps"},          {2, 1, "raw external data"},
  };
}

std::string unsupported_features_message(const Header& header, uint64_t bits) {
  std::string out = "Unsupported qcow2 feature(s): ";
  bool first = true;
  for (const FeatureName& f : header.feature_names) {
    if (f.type != 0 || f.bit >= 64 || !(bits & (1ULL << f.bit))) continue;
    out += (first ? "" : ", ") + f.name;
    first = false;
    bits &= ~(1ULL << f.bit);
  }
  if (bits) out += fmt::format("{}Unknown incompatible feature: {:x}", first ? "" : ", ", bits);
  return out;
}

Result<Header> parse_header(const uint8_t* buf, std::size_t len, SnapshotTableLimits snapshots) {
  if (len < kV2HeaderLength || load_be32(buf) != kMagic) {
    return fail(open_error("Image is not in qcow2 format"));
  }
  Header h;
  h.version = load_be32(buf + 4);
  if (h.version < 2 || h.version > 3) {
    return fail(open_error(fmt::format("Unsupported qcow2 version {}", h.version)));
  }
  const uint64_t backing_offset = load_be64(buf + 8);
  const uint32_t backing_size = load_be32(buf + 16);
  h.cluster_bits = load_be32(buf + 20);
  if (h.cluster_bits < 9 || h.cluster_bits > 21) {
    return fail(open_error(fmt::format("Unsupported cluster size: 2^{}", h.cluster_bits)));
  }
  const uint64_t cs = h.cluster_size();
  h.size = load_be64(buf + 24);
  h.crypt_method = load_be32(buf + 32);
  h.l1_size = load_be32(buf + 36);
  h.l1_table_offset = load_be64(buf + 40);
  h.refcount_table_offset = load_be64(buf + 48);
  h.refcount_table_clusters = load_be32(buf + 56);
  h.nb_snapshots = load_be32(buf + 60);
  h.snapshots_offset = load_be64(buf + 64);
  if (h.version == 2) {
    h.header_length = kV2HeaderLength;
    h.refcount_order = 4;
  } else {
    if (len < kV3MinHeaderLength) return fail(open_error("qcow2 header too short"));
    h.incompatible_features = load_be64(buf + 72);
    h.compatible_features = load_be64(buf + 80);
    h.autoclear_features = load_be64(buf + 88);
    h.refcount_order = load_be32(buf + 96);
    h.header_length = load_be32(buf + 100);
    if (h.header_length < kV3MinHeaderLength) return fail(open_error("qcow2 header too short"));
    if (h.header_length > cs || h.header_length > len) {
      return fail(open_error("qcow2 header exceeds cluster size"));
    }
    if (h.header_length > kV3MinHeaderLength) h.compression_type = buf[104];
    if (h.header_length > kKnownHeaderLength) {
      h.unknown_fields.assign(buf + kKnownHeaderLength, buf + h.header_length);
    }
  }
  if (backing_offset > cs) return fail(open_error("Invalid backing file offset"));
  if (backing_offset) {
    if (backing_size > kMaxBackingNameLength || backing_size > cs - backing_offset ||
        backing_offset + backing_size > len) {
      return fail(open_error("Backing file name too long"));
    }
    h.backing_file.assign(reinterpret_cast<const char*>(buf + backing_offset), backing_size);
  }
  // Extensions run from header_length to the backing name (or the end of cluster 0).
  const uint64_t ext_end = backing_offset ? backing_offset : std::min<uint64_t>(cs, len);
  if (Status s = parse_extensions(buf, len, h.header_length, ext_end, h); !s) {
    return fail(s.error());
  }
  if (h.refcount_order > 6) {
    return fail(open_error("Reference count entry width too large; may not exceed 64 bits"));
  }
  if (h.incompatible_features & kIncompatCompression) {
    if (h.compression_type == 0) {
      return fail(open_error("qcow2: Compression type incompatible feature bit must not be set"));
    }
  } else if (h.compression_type != 0) {
    return fail(open_error("qcow2: Compression type incompatible feature bit must be set"));
  }
  if (h.compression_type > 1) {
    return fail(open_error(fmt::format("qcow2: unknown compression type: {}", h.compression_type)));
  }
  if (h.crypt_method > 2) {
    return fail(open_error(fmt::format("Unsupported encryption method {}", h.crypt_method)));
  }
  if (h.size > (uint64_t{INT64_MAX} & ~uint64_t{511})) return fail(open_error("Image is too big"));
  const uint64_t l2_entries = cs / (h.extended_l2() ? 16 : 8);
  if (uint64_t{h.l1_size} * 8 > kMaxL1TableBytes)
    return fail(open_error("Active L1 table too large"));
  const uint64_t l1_needed = (h.size + l2_entries * cs - 1) / (l2_entries * cs);
  if (h.l1_size < l1_needed) return fail(open_error("L1 table is too small"));
  if (h.l1_size && (h.l1_table_offset % cs || h.l1_table_offset > uint64_t{INT64_MAX})) {
    return fail(open_error("Active L1 table offset invalid"));
  }
  if (h.refcount_table_clusters == 0) {
    return fail(open_error("Image does not contain a reference count table"));
  }
  if (uint64_t{h.refcount_table_clusters} * cs > kMaxRefcountTableBytes) {
    return fail(open_error("Reference count table too large"));
  }
  if (h.refcount_table_offset % cs || h.refcount_table_offset > uint64_t{INT64_MAX}) {
    return fail(open_error("Reference count table offset invalid"));
  }
  if (snapshots == SnapshotTableLimits::kRefuse) {
    if (h.nb_snapshots > kMaxSnapshots) return fail(open_error("Snapshot table too large"));
    if (h.nb_snapshots && h.snapshots_offset % cs) {
      return fail(open_error("Snapshot table offset invalid"));
    }
  }
  return h;
}

Result<std::vector<uint8_t>> serialize_header(const Header& h) {
  const uint64_t cs = h.cluster_size();
  std::vector<uint8_t> out(cs, 0);
  uint8_t* b = out.data();
  store_be32(b, kMagic);
  store_be32(b + 4, h.version);
  store_be32(b + 20, h.cluster_bits);
  store_be64(b + 24, h.size);
  store_be32(b + 32, h.crypt_method);
  store_be32(b + 36, h.l1_size);
  store_be64(b + 40, h.l1_table_offset);
  store_be64(b + 48, h.refcount_table_offset);
  store_be32(b + 56, h.refcount_table_clusters);
  store_be32(b + 60, h.nb_snapshots);
  store_be64(b + 64, h.snapshots_offset);
  uint64_t pos = kV2HeaderLength;
  if (h.version >= 3) {
    store_be64(b + 72, h.incompatible_features);
    store_be64(b + 80, h.compatible_features);
    store_be64(b + 88, h.autoclear_features);
    store_be32(b + 96, h.refcount_order);
    const uint32_t length = kKnownHeaderLength + static_cast<uint32_t>(h.unknown_fields.size());
    store_be32(b + 100, length);
    b[104] = h.compression_type;
    if (!h.unknown_fields.empty()) {
      std::memcpy(b + kKnownHeaderLength, h.unknown_fields.data(), h.unknown_fields.size());
    }
    pos = length;
  }
  auto put_ext = [&](uint32_t type, const uint8_t* data, std::size_t n) -> bool {
    if (pos + 8 + align_up(n, 8) > cs) return false;
    store_be32(b + pos, type);
    store_be32(b + pos + 4, static_cast<uint32_t>(n));
    if (n) std::memcpy(b + pos + 8, data, n);
    pos += 8 + align_up(n, 8);
    return true;
  };
  auto as_bytes = [](const std::string& s) { return reinterpret_cast<const uint8_t*>(s.data()); };
  bool fits = true;
  // qcow2-format.md §4.4: the order QEMU writes them in.
  if (!h.backing_format.empty()) {
    fits &= put_ext(kExtBackingFormat, as_bytes(h.backing_format), h.backing_format.size());
  }
  if (!h.data_file.empty())
    fits &= put_ext(kExtDataFile, as_bytes(h.data_file), h.data_file.size());
  if (h.crypto_header) {
    uint8_t data[16];
    store_be64(data, h.crypto_header->first);
    store_be64(data + 8, h.crypto_header->second);
    fits &= put_ext(kExtCryptoHeader, data, sizeof(data));
  }
  if (h.has_feature_table) {
    std::vector<uint8_t> table(h.feature_names.size() * 48, 0);
    for (std::size_t i = 0; i < h.feature_names.size(); ++i) {
      table[i * 48] = h.feature_names[i].type;
      table[i * 48 + 1] = h.feature_names[i].bit;
      std::memcpy(&table[i * 48 + 2], h.feature_names[i].name.data(),
                  std::min<std::size_t>(46, h.feature_names[i].name.size()));
    }
    fits &= put_ext(kExtFeatureTable, table.data(), table.size());
  }
  if (h.bitmaps) fits &= put_ext(kExtBitmaps, h.bitmaps->data(), h.bitmaps->size());
  for (const UnknownExtension& e : h.unknown_extensions) {
    fits &= put_ext(e.type, e.data.data(), e.data.size());
  }
  fits &= put_ext(kExtEnd, nullptr, 0);
  if (!h.backing_file.empty()) {
    if (pos + h.backing_file.size() > cs || h.backing_file.size() > kMaxBackingNameLength) {
      fits = false;
    } else {
      store_be64(b + 8, pos);
      store_be32(b + 16, static_cast<uint32_t>(h.backing_file.size()));
      std::memcpy(b + pos, h.backing_file.data(), h.backing_file.size());
      pos += h.backing_file.size();
    }
  }
  if (!fits) return fail(Error::with_message(EINVAL, "Header does not fit in the first cluster"));
  out.resize(pos);  // callers pad to the cluster when they need to
  return out;
}

}  // namespace qblock::qcow2
