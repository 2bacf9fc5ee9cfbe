// The crypto layer's primitives against published known answers (AES-XTS from IEEE 1619,
// PBKDF2-HMAC-SHA1 from RFC 6070), and round trips of every algorithm x mode x IV generator
// through SectorCrypto, also from several threads at once. Interop with QEMU's LUKS volumes
// is tests/interop/luks_matrix.sh.
#include "crypto/cipher.h"

#include <gtest/gtest.h>
#include <nettle/aes.h>
#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/nettle-meta.h>
#include <nettle/xts.h>

#include <algorithm>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "crypto/afsplit.h"
#include "crypto/pbkdf2.h"
#include "crypto/sector_crypto.h"

namespace qblock::crypto {
namespace {

std::string hex(const uint8_t* p, std::size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    s += kDigits[p[i] >> 4];
    s += kDigits[p[i] & 15];
  }
  return s;
}

TEST(Cipher, AesXtsIeee1619Vector1) {
  std::vector<uint8_t> key(32, 0);  // two aes-128 keys
  Result<std::unique_ptr<Cipher>> c =
      Cipher::create(CipherAlg::kAes128, CipherMode::kXts, key.data(), key.size());
  ASSERT_TRUE(c.has_value());
  uint8_t buf[32] = {};
  uint8_t tweak[16] = {};
  (*c)->encrypt(buf, sizeof(buf), tweak);
  EXPECT_EQ(hex(buf, sizeof(buf)),
            "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");
  (*c)->decrypt(buf, sizeof(buf), tweak);
  EXPECT_EQ(hex(buf, sizeof(buf)), std::string(64, '0'));
}

// AES in cbc, ctr and xts runs on OpenSSL (and on nettle when OpenSSL refuses the key, as
// the IEEE vector's equal xts halves above): both must give nettle's bytes, both ways, for
// every key size, also with several sessions of one cipher in use at once.
TEST(Cipher, AesMatchesNettleInEveryMode) {
  std::mt19937 rng(7);
  const std::pair<CipherAlg, const nettle_cipher*> kAes[] = {{CipherAlg::kAes128, &nettle_aes128},
                                                             {CipherAlg::kAes192, &nettle_aes192},
                                                             {CipherAlg::kAes256, &nettle_aes256}};
  for (const auto& [alg, meta] : kAes) {
    for (CipherMode mode : {CipherMode::kCbc, CipherMode::kCtr, CipherMode::kXts}) {
      if (alg == CipherAlg::kAes192 && mode == CipherMode::kXts) continue;  // QEMU has none
      SCOPED_TRACE(std::string(cipher_alg_name(alg)) + "-" + std::string(cipher_mode_name(mode)));
      const std::size_t ks = meta->key_size;
      std::vector<uint8_t> key(mode == CipherMode::kXts ? 2 * ks : ks);
      for (uint8_t& b : key) b = static_cast<uint8_t>(rng());
      std::vector<uint8_t> plain(4096), iv(16);
      for (uint8_t& b : plain) b = static_cast<uint8_t>(rng());
      for (uint8_t& b : iv) b = static_cast<uint8_t>(rng());
      // nettle's answer
      std::vector<uint8_t> want = plain, enc(meta->context_size), tweak(meta->context_size);
      meta->set_encrypt_key(enc.data(), key.data());
      std::vector<uint8_t> state = iv;
      switch (mode) {
        case CipherMode::kCbc:
          cbc_encrypt(enc.data(), meta->encrypt, 16, state.data(), want.size(), want.data(),
                      want.data());
          break;
        case CipherMode::kCtr:
          ctr_crypt(enc.data(), meta->encrypt, 16, state.data(), want.size(), want.data(),
                    want.data());
          break;
        default:
          meta->set_encrypt_key(tweak.data(), key.data() + ks);
          xts_encrypt_message(enc.data(), tweak.data(), meta->encrypt, iv.data(), want.size(),
                              want.data(), want.data());
      }
      Result<std::unique_ptr<Cipher>> c = Cipher::create(alg, mode, key.data(), key.size());
      ASSERT_TRUE(c.has_value());
      Cipher::Session first = (*c)->session();
      Cipher::Session second = (*c)->session();
      std::vector<uint8_t> a = plain, b = plain;
      first.encrypt(a.data(), a.size(), iv.data());
      second.encrypt(b.data(), 512, iv.data());  // another context; every mode here is
                                                 // prefix-consistent for whole blocks
      EXPECT_EQ(a, want);
      (*c)->decrypt(a.data(), a.size(), iv.data());
      EXPECT_EQ(a, plain);
      EXPECT_TRUE(std::equal(b.begin(), b.begin() + 512, want.begin()));
    }
  }
}

TEST(Cipher, Cast5RefusesXts) {
  std::vector<uint8_t> key(32, 1);
  Result<std::unique_ptr<Cipher>> c =
      Cipher::create(CipherAlg::kCast5_128, CipherMode::kXts, key.data(), key.size());
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error().message(), "Unsupported cipher mode xts");
}

TEST(Pbkdf2, Rfc6070) {
  const std::string password = "password", salt = "salt";
  SecretBytes out =
      pbkdf2(HashAlg::kSha1, reinterpret_cast<const uint8_t*>(password.data()), password.size(),
             reinterpret_cast<const uint8_t*>(salt.data()), salt.size(), 2, 20);
  EXPECT_EQ(hex(out.data(), out.size()), "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957");
}

TEST(Pbkdf2, ScaleRefusesOverflow) {
  Result<uint32_t> r = scale_iterations(UINT64_MAX / 2, 2000);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errnum(), ERANGE);
  EXPECT_EQ(*scale_iterations(100000, 10), 1000u);
}

TEST(AfSplit, RoundTripsEveryHash) {
  for (HashAlg hash : {HashAlg::kSha1, HashAlg::kSha256, HashAlg::kSha512, HashAlg::kRipemd160}) {
    SecretBytes key(std::string_view("0123456789abcdef0123456789abcdef0123456789abcdef"));
    Result<SecretBytes> split = af_split(hash, key, 4000);
    ASSERT_TRUE(split.has_value());
    EXPECT_EQ(split->size(), key.size() * 4000);
    EXPECT_TRUE(af_merge(hash, *split, key.size(), 4000) == key);
    split->data()[17] ^= 1;  // any damage loses the key
    EXPECT_FALSE(af_merge(hash, *split, key.size(), 4000) == key);
  }
}

TEST(SectorCrypto, EveryCombinationRoundTrips) {
  std::vector<uint8_t> plain(4096);
  std::mt19937 rng(5);
  for (uint8_t& b : plain) b = static_cast<uint8_t>(rng());
  for (int a = 0; a <= static_cast<int>(CipherAlg::kCast5_128); ++a) {
    for (CipherMode mode :
         {CipherMode::kEcb, CipherMode::kCbc, CipherMode::kCtr, CipherMode::kXts}) {
      for (IvGenAlg ivgen : {IvGenAlg::kPlain, IvGenAlg::kPlain64, IvGenAlg::kEssiv}) {
        SectorCryptoSpec spec{static_cast<CipherAlg>(a), mode, ivgen, HashAlg::kSha256};
        if (spec.cipher == CipherAlg::kCast5_128 && ivgen == IvGenAlg::kEssiv) continue;
        SecretBytes key(cipher_key_size(spec.cipher) * (mode == CipherMode::kXts ? 2 : 1));
        for (std::size_t i = 0; i < key.size(); ++i) key.data()[i] = static_cast<uint8_t>(i);
        Result<std::unique_ptr<SectorCrypto>> c = SectorCrypto::create(spec, key);
        if (mode == CipherMode::kXts && spec.cipher == CipherAlg::kCast5_128) {
          EXPECT_FALSE(c.has_value());
          continue;
        }
        if (ivgen == IvGenAlg::kEssiv && cipher_key_size(spec.cipher) != 32 &&
            !cipher_alg_for(cipher_family(spec.cipher), 32)) {
          continue;
        }
        ASSERT_TRUE(c.has_value()) << cipher_alg_name(spec.cipher) << " " << c.error().message();
        std::vector<uint8_t> buf = plain;
        (*c)->encrypt(7, buf.data(), buf.size());
        EXPECT_NE(buf, plain);
        // Each sector has its own IV: the same plaintext in two sectors differs (not ecb).
        (*c)->decrypt(7, buf.data(), buf.size());
        EXPECT_EQ(buf, plain) << cipher_alg_name(spec.cipher) << cipher_mode_name(mode);
      }
    }
  }
}

TEST(SectorCrypto, ConcurrentCallsAgree) {
  SecretBytes key(64);
  for (std::size_t i = 0; i < key.size(); ++i) key.data()[i] = static_cast<uint8_t>(i * 3);
  Result<std::unique_ptr<SectorCrypto>> c = SectorCrypto::create(SectorCryptoSpec{}, key);
  ASSERT_TRUE(c.has_value());
  std::vector<uint8_t> expect(65536, 0x5a);
  (*c)->encrypt(100, expect.data(), expect.size());
  std::vector<std::thread> threads;
  std::vector<int> good(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        std::vector<uint8_t> buf(65536, 0x5a);
        (*c)->encrypt(100, buf.data(), buf.size());
        if (buf == expect) ++good[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int g : good) EXPECT_EQ(g, 20);
}

}  // namespace
}  // namespace qblock::crypto
