// LUKS1 volumes: format then unlock (right and wrong password), the header's encoding, and
// hostile headers refused with a clear error.
#include "crypto/luks.h"

#include <gtest/gtest.h>

#include "base/byte_order.h"

namespace qblock::crypto {
namespace {

LuksFormatted format_small(const LuksCreateOptions& o, const SecretBytes& pw) {
  Result<LuksFormatted> f = luks_format(o, pw);
  EXPECT_TRUE(f.has_value()) << f.error().message();
  return std::move(*f);
}

TEST(Luks, FormatThenUnlock) {
  LuksCreateOptions o;
  o.iter_time_ms = 1;
  SecretBytes pw(std::string_view("abc"));
  LuksFormatted f = format_small(o, pw);
  EXPECT_EQ(f.header.cipher_name, "aes");
  EXPECT_EQ(f.header.cipher_mode, "xts-plain64");
  EXPECT_EQ(f.header.key_bytes, 64u);
  EXPECT_EQ(f.header.slots[0].key_offset, 8u);
  EXPECT_EQ(f.header.slots[1].key_offset, 512u);
  EXPECT_EQ(f.header.payload_offset, 4040u);  // as qemu-img 7.2 lays it out
  EXPECT_GE(f.header.slots[0].iterations, 1000u);
  EXPECT_GE(f.header.mk_digest_iterations, 1000u);

  Result<LuksHeader> h = decode_luks_header(f.header_bytes.data(), f.header_bytes.size(),
                                            uint64_t{f.header.payload_offset} * 512);
  ASSERT_TRUE(h.has_value()) << h.error().message();
  Result<LuksParams> p = luks_params(*h);
  ASSERT_TRUE(p.has_value());
  SecretBytes mk = luks_try_slot(*h, *p, 0, f.key_material.data(), pw);
  ASSERT_FALSE(mk.empty());
  SecretBytes wrong(std::string_view("abd"));
  EXPECT_TRUE(luks_try_slot(*h, *p, 0, f.key_material.data(), wrong).empty());

  // The unlocked key decrypts what the formatted volume's cipher encrypted.
  std::vector<uint8_t> data(1024, 9);
  f.crypto->encrypt(3, data.data(), data.size());
  Result<std::unique_ptr<SectorCrypto>> c = luks_payload_crypto(*p, mk);
  ASSERT_TRUE(c.has_value());
  (*c)->decrypt(3, data.data(), data.size());
  EXPECT_EQ(data, std::vector<uint8_t>(1024, 9));
}

TEST(Luks, OptionsQemuRefuses) {
  LuksCreateOptions o;
  o.spec.cipher = CipherAlg::kCast5_128;
  EXPECT_EQ(luks_check_options(o).error().message(), "Unsupported cipher mode xts");
  o.spec = SectorCryptoSpec{};
  o.spec.ivgen = IvGenAlg::kEssiv;
  o.spec.ivgen_hash = HashAlg::kSha1;
  EXPECT_EQ(luks_check_options(o).error().message(), "No AES cipher with key size 20 available");
  o.spec = SectorCryptoSpec{};
  o.spec.cipher = CipherAlg::kAes192;
  o.spec.mode = CipherMode::kCbc;
  EXPECT_FALSE(luks_check_options(o).has_value());
}

TEST(Luks, HostileHeadersAreRefused) {
  LuksCreateOptions o;
  o.iter_time_ms = 1;
  LuksFormatted f = format_small(o, SecretBytes(std::string_view("x")));
  const uint64_t size = uint64_t{f.header.payload_offset} * 512;
  auto refused = [&](auto mutate, std::string_view want) {
    std::vector<uint8_t> b = f.header_bytes;
    mutate(b.data());
    Result<LuksHeader> h = decode_luks_header(b.data(), b.size(), size);
    ASSERT_FALSE(h.has_value()) << want;
    EXPECT_EQ(h.error().message(), want);
  };
  refused([](uint8_t* p) { p[0] = 'X'; }, "Volume is not in LUKS format");
  refused([](uint8_t* p) { store_be16(p + 6, 2); }, "LUKS version 2 is not supported");
  refused([](uint8_t* p) { std::memset(p + 8, 'a', 32); },
          "LUKS header has an unterminated string field");
  refused([](uint8_t* p) { std::memcpy(p + 8, "des", 4); },
          "Cipher name 'des' with key size 64 bytes is not supported");
  refused([](uint8_t* p) { store_be32(p + 108, 0xffffffff); },
          "Cipher name 'aes' with key size 4294967295 bytes is not supported");
  refused([](uint8_t* p) { store_be32(p + 208 + 44, 0x7fffffff); },
          "Keyslot 0 is corrupted (stripes 2147483647 != 4000)");
  refused([](uint8_t* p) { store_be32(p + 208 + 48 + 40, 8); },
          "Keyslots 0 and 1 are overlapping in the header");
  refused([](uint8_t* p) { store_be32(p + 208 + 40, 0xfffffff0); },
          "Keyslot 0 is overlapping with the encrypted payload");
  refused([](uint8_t* p) { store_be32(p + 104, 0xffffffff); },
          "LUKS payload is overlapping with the header");
  refused([](uint8_t* p) { store_be32(p + 208, 0x1234); }, "Keyslot 0 state is corrupted");
  refused([](uint8_t* p) { store_be32(p + 208 + 4, 0); },
          "Keyslot 0 is corrupted (iteration count 0)");
}

}  // namespace
}  // namespace qblock::crypto
