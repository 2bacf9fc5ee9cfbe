// Ciphers over OpenSSL and nettle (see cipher.h).
#include "crypto/cipher.h"

#include <nettle/cbc.h>
#include <nettle/ctr.h>
#include <nettle/nettle-meta.h>
#include <nettle/xts.h>
#include <openssl/evp.h>
#include <string.h>

#include <array>
#include <cstring>

#include "base/check.h"

namespace qblock::crypto {

namespace {

struct CipherEntry {
  CipherAlg alg;
  std::string_view name;
  std::string_view family;
  const nettle_cipher* meta;
};

const std::array<CipherEntry, 10>& table() {
  static const std::array<CipherEntry, 10> kTable = {{
      {CipherAlg::kAes128, "aes-128", "aes", &nettle_aes128},
      {CipherAlg::kAes192, "aes-192", "aes", &nettle_aes192},
      {CipherAlg::kAes256, "aes-256", "aes", &nettle_aes256},
      {CipherAlg::kSerpent128, "serpent-128", "serpent", &nettle_serpent128},
      {CipherAlg::kSerpent192, "serpent-192", "serpent", &nettle_serpent192},
      {CipherAlg::kSerpent256, "serpent-256", "serpent", &nettle_serpent256},
      {CipherAlg::kTwofish128, "twofish-128", "twofish", &nettle_twofish128},
      {CipherAlg::kTwofish192, "twofish-192", "twofish", &nettle_twofish192},
      {CipherAlg::kTwofish256, "twofish-256", "twofish", &nettle_twofish256},
      {CipherAlg::kCast5_128, "cast5-128", "cast5", &nettle_cast128},
  }};
  return kTable;
}

const CipherEntry& entry(CipherAlg alg) {
  for (const CipherEntry& e : table()) {
    if (e.alg == alg) return e;
  }
  CHECK(false);
  return table()[0];
}

constexpr std::array<std::pair<CipherMode, std::string_view>, 4> kModes = {{
    {CipherMode::kEcb, "ecb"},
    {CipherMode::kCbc, "cbc"},
    {CipherMode::kXts, "xts"},
    {CipherMode::kCtr, "ctr"},
}};

constexpr std::size_t kMaxBlock = 16;

}  // namespace

std::optional<CipherAlg> parse_cipher_alg(std::string_view name) {
  for (const CipherEntry& e : table()) {
    if (e.name == name) return e.alg;
  }
  return std::nullopt;
}

std::string_view cipher_alg_name(CipherAlg alg) { return entry(alg).name; }
std::string_view cipher_family(CipherAlg alg) { return entry(alg).family; }

std::optional<CipherAlg> cipher_alg_for(std::string_view family, std::size_t key_bytes) {
  for (const CipherEntry& e : table()) {
    if (e.family == family && e.meta->key_size == key_bytes) return e.alg;
  }
  return std::nullopt;
}

std::size_t cipher_key_size(CipherAlg alg) { return entry(alg).meta->key_size; }
std::size_t cipher_block_size(CipherAlg alg) { return entry(alg).meta->block_size; }

std::optional<CipherMode> parse_cipher_mode(std::string_view name) {
  for (const auto& [mode, n] : kModes) {
    if (n == name) return mode;
  }
  return std::nullopt;
}

std::string_view cipher_mode_name(CipherMode mode) {
  for (const auto& [m, n] : kModes) {
    if (m == mode) return n;
  }
  return "";
}

// OpenSSL contexts keyed for one cipher: `enc` encrypts (and decrypts in ctr mode, where `dec`
// is null). Freeing them wipes the key schedules.
struct Cipher::Session::Contexts {
  EVP_CIPHER_CTX* enc = nullptr;
  EVP_CIPHER_CTX* dec = nullptr;
  ~Contexts() {
    EVP_CIPHER_CTX_free(enc);
    EVP_CIPHER_CTX_free(dec);
  }
};

namespace {

using Contexts = Cipher::Session::Contexts;

// OpenSSL's cipher for `alg` in `mode`, or null where nettle runs it (ecb, which is used only
// for single blocks and LUKS's rare ecb payloads; ciphers other than AES; aes-192 in xts,
// which OpenSSL lacks).
const EVP_CIPHER* evp_cipher(CipherAlg alg, CipherMode mode) {
  const int bits = alg == CipherAlg::kAes128   ? 128
                   : alg == CipherAlg::kAes192 ? 192
                   : alg == CipherAlg::kAes256 ? 256
                                               : 0;
  if (bits == 0) return nullptr;
  switch (mode) {
    case CipherMode::kCbc:
      return bits == 128 ? EVP_aes_128_cbc() : bits == 192 ? EVP_aes_192_cbc() : EVP_aes_256_cbc();
    case CipherMode::kCtr:
      return bits == 128 ? EVP_aes_128_ctr() : bits == 192 ? EVP_aes_192_ctr() : EVP_aes_256_ctr();
    case CipherMode::kXts:
      return bits == 128 ? EVP_aes_128_xts() : bits == 256 ? EVP_aes_256_xts() : nullptr;
    case CipherMode::kEcb: return nullptr;
  }
  return nullptr;
}

// New contexts keyed with `key` for `cipher` (padding off: every length is whole blocks), or
// null if OpenSSL refuses the key (its xts refuses equal data and tweak keys; nettle then
// does the work, as QEMU accepts such keys).
std::unique_ptr<Contexts> keyed_contexts(const EVP_CIPHER* cipher, CipherMode mode,
                                         const uint8_t* key) {
  auto c = std::make_unique<Contexts>();
  c->enc = EVP_CIPHER_CTX_new();
  if (!c->enc || EVP_EncryptInit_ex(c->enc, cipher, nullptr, key, nullptr) != 1) return nullptr;
  EVP_CIPHER_CTX_set_padding(c->enc, 0);
  if (mode == CipherMode::kCtr) return c;
  c->dec = EVP_CIPHER_CTX_new();
  if (!c->dec || EVP_DecryptInit_ex(c->dec, cipher, nullptr, key, nullptr) != 1) return nullptr;
  EVP_CIPHER_CTX_set_padding(c->dec, 0);
  return c;
}

// A copy of `from` for another thread, or null if OpenSSL cannot copy it.
std::unique_ptr<Contexts> copy_contexts(const Contexts& from) {
  auto c = std::make_unique<Contexts>();
  c->enc = EVP_CIPHER_CTX_new();
  if (!c->enc || EVP_CIPHER_CTX_copy(c->enc, from.enc) != 1) return nullptr;
  if (!from.dec) return c;
  c->dec = EVP_CIPHER_CTX_new();
  if (!c->dec || EVP_CIPHER_CTX_copy(c->dec, from.dec) != 1) return nullptr;
  return c;
}

}  // namespace

Cipher::Cipher(CipherAlg alg, CipherMode mode, const nettle_cipher& meta)
    : alg_(alg),
      mode_(mode),
      meta_(&meta),
      enc_ctx_(meta.context_size),
      dec_ctx_(meta.context_size),
      tweak_ctx_(mode == CipherMode::kXts ? meta.context_size : 0) {}

namespace {

// explicit_bzero of a vector that may be empty (its data() is then null, which the function
// must not be given).
void wipe(std::vector<uint8_t>& v) {
  if (!v.empty()) explicit_bzero(v.data(), v.size());
}

}  // namespace

Cipher::~Cipher() {
  wipe(enc_ctx_);
  wipe(dec_ctx_);
  wipe(tweak_ctx_);  // empty outside xts
  for (Contexts* c : pool_) delete c;
}

Result<std::unique_ptr<Cipher>> Cipher::create(CipherAlg alg, CipherMode mode, const uint8_t* key,
                                               std::size_t key_len) {
  const nettle_cipher& meta = *entry(alg).meta;
  if (mode == CipherMode::kXts && meta.block_size != 16) {
    return fail(Error::with_message(EINVAL, "Unsupported cipher mode xts"));
  }
  const std::size_t want = meta.key_size * (mode == CipherMode::kXts ? 2 : 1);
  if (key_len != want) {
    return fail(Error::with_message(EINVAL, "Cipher key length " + std::to_string(key_len) +
                                                " must be " + std::to_string(want)));
  }
  std::unique_ptr<Cipher> c(new Cipher(alg, mode, meta));
  meta.set_encrypt_key(c->enc_ctx_.data(), key);
  meta.set_decrypt_key(c->dec_ctx_.data(), key);
  if (mode == CipherMode::kXts) meta.set_encrypt_key(c->tweak_ctx_.data(), key + meta.key_size);
  if (const EVP_CIPHER* evp = evp_cipher(alg, mode)) c->template_ = keyed_contexts(evp, mode, key);
  return c;
}

std::size_t Cipher::block_size() const { return meta_->block_size; }

void Cipher::nettle_crypt(bool encrypt, uint8_t* buf, std::size_t len, const uint8_t* iv) const {
  const std::size_t bs = meta_->block_size;
  uint8_t state[kMaxBlock];
  switch (mode_) {
    case CipherMode::kEcb:
      if (encrypt) {
        meta_->encrypt(enc_ctx_.data(), len, buf, buf);
      } else {
        meta_->decrypt(dec_ctx_.data(), len, buf, buf);
      }
      break;
    case CipherMode::kCbc:
      std::memcpy(state, iv, bs);
      if (encrypt) {
        cbc_encrypt(enc_ctx_.data(), meta_->encrypt, bs, state, len, buf, buf);
      } else {
        cbc_decrypt(dec_ctx_.data(), meta_->decrypt, bs, state, len, buf, buf);
      }
      break;
    case CipherMode::kCtr:
      std::memcpy(state, iv, bs);
      ctr_crypt(enc_ctx_.data(), meta_->encrypt, bs, state, len, buf, buf);
      break;
    case CipherMode::kXts:
      if (encrypt) {
        xts_encrypt_message(enc_ctx_.data(), tweak_ctx_.data(), meta_->encrypt, iv, len, buf, buf);
      } else {
        xts_decrypt_message(dec_ctx_.data(), tweak_ctx_.data(), meta_->decrypt, meta_->encrypt, iv,
                            len, buf, buf);
      }
      break;
  }
}

Cipher::Session Cipher::session() const {
  if (!template_) return Session(*this, nullptr);
  {
    std::lock_guard<std::mutex> lock(pool_mutex_);
    if (!pool_.empty()) {
      Session::Contexts* c = pool_.back();
      pool_.pop_back();
      return Session(*this, c);
    }
  }
  // A context of one's own: a copy of the keyed template (none: nettle does this session).
  return Session(*this, copy_contexts(*template_).release());
}

Cipher::Session::~Session() {
  if (!contexts_) return;
  std::lock_guard<std::mutex> lock(cipher_.pool_mutex_);
  cipher_.pool_.push_back(contexts_);
}

void Cipher::Session::encrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) {
  if (!contexts_) return cipher_.nettle_crypt(true, buf, len, iv);
  int out = 0;
  CHECK(EVP_EncryptInit_ex(contexts_->enc, nullptr, nullptr, nullptr, iv) == 1);
  CHECK(EVP_EncryptUpdate(contexts_->enc, buf, &out, buf, static_cast<int>(len)) == 1);
}

void Cipher::Session::decrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) {
  if (!contexts_) return cipher_.nettle_crypt(false, buf, len, iv);
  int out = 0;
  if (!contexts_->dec) {  // ctr: the same operation both ways
    CHECK(EVP_EncryptInit_ex(contexts_->enc, nullptr, nullptr, nullptr, iv) == 1);
    CHECK(EVP_EncryptUpdate(contexts_->enc, buf, &out, buf, static_cast<int>(len)) == 1);
    return;
  }
  CHECK(EVP_DecryptInit_ex(contexts_->dec, nullptr, nullptr, nullptr, iv) == 1);
  CHECK(EVP_DecryptUpdate(contexts_->dec, buf, &out, buf, static_cast<int>(len)) == 1);
}

void Cipher::encrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) const {
  session().encrypt(buf, len, iv);
}

void Cipher::decrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) const {
  session().decrypt(buf, len, iv);
}

}  // namespace qblock::crypto
