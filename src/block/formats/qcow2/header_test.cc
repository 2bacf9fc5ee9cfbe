// parse_header/serialize_header: round trips and QEMU 7.2's open-time messages for malformed
// headers (qcow2-format.md §2, §4, §18).
#include "block/formats/qcow2/header.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/byte_order.h"

namespace qblock::qcow2 {
namespace {

Header fresh_header() {
  Header h;
  h.size = 64 << 20;
  h.l1_size = 1;
  h.l1_table_offset = 0x30000;
  h.refcount_table_offset = 0x10000;
  h.refcount_table_clusters = 1;
  h.has_feature_table = true;
  h.feature_names = default_feature_names();
  return h;
}

// Cluster 0 of a fresh 64 MiB image, padded to the cluster.
std::vector<uint8_t> cluster0(const Header& h) {
  Result<std::vector<uint8_t>> b = serialize_header(h);
  EXPECT_TRUE(b.has_value());
  std::vector<uint8_t> out = b ? *b : std::vector<uint8_t>{};
  out.resize(h.cluster_size(), 0);
  return out;
}

std::string parse_error(const std::vector<uint8_t>& buf) {
  Result<Header> h = parse_header(buf.data(), buf.size());
  return h ? std::string("(parsed)") : h.error().message();
}

TEST(Qcow2Header, RoundTripV3) {
  Header h = fresh_header();
  h.backing_file = "base.qcow2";
  h.backing_format = "qcow2";
  h.compatible_features = kCompatLazyRefcounts;
  h.incompatible_features = kIncompatCompression;
  h.compression_type = 1;
  h.refcount_order = 3;
  h.unknown_extensions.push_back({0x12345678, {1, 2, 3}});
  std::vector<uint8_t> buf = cluster0(h);
  Result<Header> p = parse_header(buf.data(), buf.size());
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->version, 3u);
  EXPECT_EQ(p->size, h.size);
  EXPECT_EQ(p->l1_size, 1u);
  EXPECT_EQ(p->l1_table_offset, 0x30000u);
  EXPECT_EQ(p->refcount_table_offset, 0x10000u);
  EXPECT_EQ(p->refcount_order, 3u);
  EXPECT_EQ(p->compression_type, 1);
  EXPECT_EQ(p->backing_file, "base.qcow2");
  EXPECT_EQ(p->backing_format, "qcow2");
  EXPECT_EQ(p->compatible_features, kCompatLazyRefcounts);
  ASSERT_EQ(p->feature_names.size(), 8u);
  EXPECT_EQ(p->feature_names[4].name, "extended L2 entries");
  ASSERT_EQ(p->unknown_extensions.size(), 1u);
  EXPECT_EQ(p->unknown_extensions[0].data, (std::vector<uint8_t>{1, 2, 3}));
  // Serialising the parsed header gives the same bytes again.
  EXPECT_EQ(cluster0(*p), buf);
  // qcow2-format.md §4.4: backing fmt at 112, feature table at 128, name at 528.
  EXPECT_EQ(load_be32(&buf[112]), kExtBackingFormat);
  EXPECT_EQ(load_be32(&buf[128]), kExtFeatureTable);
  EXPECT_EQ(load_be64(&buf[8]), 528u + 16u);  // the unknown extension (3 bytes + pad) first
}

TEST(Qcow2Header, RoundTripV2) {
  Header h = fresh_header();
  h.version = 2;
  h.header_length = 72;
  h.has_feature_table = false;
  h.feature_names.clear();
  std::vector<uint8_t> buf = cluster0(h);
  Result<Header> p = parse_header(buf.data(), buf.size());
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->version, 2u);
  EXPECT_EQ(p->header_length, 72u);
  EXPECT_EQ(p->refcount_bits(), 16u);
  EXPECT_EQ(cluster0(*p), buf);
}

struct Poke {
  const char* name;
  std::size_t offset;
  std::vector<uint8_t> bytes;
  const char* message;
};

class Qcow2HeaderMalformed : public ::testing::TestWithParam<Poke> {};

TEST_P(Qcow2HeaderMalformed, GivesQemuMessage) {
  std::vector<uint8_t> buf = cluster0(fresh_header());
  const Poke& p = GetParam();
  std::copy(p.bytes.begin(), p.bytes.end(), buf.begin() + p.offset);
  EXPECT_EQ(parse_error(buf), p.message);
}

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}
std::vector<uint8_t> be64(uint64_t v) {
  std::vector<uint8_t> out = be32(uint32_t(v >> 32));
  std::vector<uint8_t> lo = be32(uint32_t(v));
  out.insert(out.end(), lo.begin(), lo.end());
  return out;
}

// Messages checked against qemu-img info 7.2 on poked images (tests/iotests/img/004).
INSTANTIATE_TEST_SUITE_P(
    Qcow2, Qcow2HeaderMalformed,
    ::testing::Values(
        Poke{"BadMagic", 0, {'X', 'X', 'X', 'X'}, "Image is not in qcow2 format"},
        Poke{"Version4", 4, be32(4), "Unsupported qcow2 version 4"},
        Poke{"ClusterBits8", 20, be32(8), "Unsupported cluster size: 2^8"},
        Poke{"ClusterBits22", 20, be32(22), "Unsupported cluster size: 2^22"},
        Poke{"HeaderTooShort", 100, be32(100), "qcow2 header too short"},
        Poke{"RefcountOrder7", 96, be32(7),
             "Reference count entry width too large; may not exceed 64 bits"},
        Poke{"CompressionBitWithoutType", 72, be64(kIncompatCompression),
             "qcow2: Compression type incompatible feature bit must not be set"},
        Poke{"CompressionTypeWithoutBit",
             104,
             {1},
             "qcow2: Compression type incompatible feature bit must be set"},
        Poke{"CryptMethod3", 32, be32(3), "Unsupported encryption method 3"},
        Poke{"L1TooLarge", 36, be32(0x400001), "Active L1 table too large"},
        Poke{"L1TooSmall", 36, be32(0), "L1 table is too small"},
        Poke{"L1Unaligned", 40, be64(0x30200), "Active L1 table offset invalid"},
        Poke{"ReftableClusters0", 56, be32(0), "Image does not contain a reference count table"},
        Poke{"ReftableTooLarge", 56, be32(256), "Reference count table too large"},
        Poke{"ReftableUnaligned", 48, be64(0x10100), "Reference count table offset invalid"},
        Poke{"TooManySnapshots", 60, be32(65537), "Snapshot table too large"},
        Poke{"SnapshotTableUnaligned",
             60,
             {0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x12, 0x34},
             "Snapshot table offset invalid"},
        Poke{"BackingOffsetPastCluster", 8, be64(0x10001), "Invalid backing file offset"},
        Poke{"BackingNameTooLong",
             8,
             {0, 0, 0, 0, 0, 0, 0x02, 0x00, 0, 0, 0x04, 0x00},
             "Backing file name too long"},
        Poke{"ExtensionTooLarge", 116, be32(0x10000), "Header extension too large"}),
    [](const ::testing::TestParamInfo<Poke>& info) { return std::string(info.param.name); });

TEST(Qcow2Header, UnknownCompressionType) {
  std::vector<uint8_t> buf = cluster0(fresh_header());
  std::vector<uint8_t> bit = be64(kIncompatCompression);
  std::copy(bit.begin(), bit.end(), buf.begin() + 72);
  buf[104] = 2;
  EXPECT_EQ(parse_error(buf), "qcow2: unknown compression type: 2");
}

TEST(Qcow2Header, UnsupportedFeatureMessages) {
  Header h = fresh_header();
  // §2.3: an unnamed bit 5 is reported as a hex mask.
  EXPECT_EQ(unsupported_features_message(h, 1ULL << 5),
            "Unsupported qcow2 feature(s): Unknown incompatible feature: 20");
  EXPECT_EQ(unsupported_features_message(h, 1ULL << 20),
            "Unsupported qcow2 feature(s): Unknown incompatible feature: 100000");
  // A name from the image's table comes first, then the remaining unnamed bits.
  h.feature_names.push_back({0, 5, "my feature"});
  EXPECT_EQ(unsupported_features_message(h, (1ULL << 5) | (1ULL << 6)),
            "Unsupported qcow2 feature(s): my feature, Unknown incompatible feature: 40");
}

TEST(Qcow2Header, BackingFormatTooLong) {
  Header h = fresh_header();
  h.backing_format = "0123456789abcdef";  // 16 bytes: QEMU's buffer limit
  std::vector<uint8_t> buf = cluster0(h);
  EXPECT_EQ(parse_error(buf), "ERROR: ext_backing_format: len=16 too large (>=16)");
}

}  // namespace
}  // namespace qblock::qcow2
