// Block ciphers in the modes LUKS and qcow2 use, by QEMU's names ("aes-256", "xts", ...): the
// algorithms aes-128/192/256, serpent-128/192/256, twofish-128/192/256 and cast5-128; the modes
// ecb, cbc, ctr and xts. Only glue: AES in cbc, ctr and xts runs on OpenSSL's libcrypto (AES-NI
// and its vectorised xts, about 9x nettle's xts here), everything else on nettle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "qblock/error.h"

struct nettle_cipher;
struct evp_cipher_ctx_st;

namespace qblock::crypto {

enum class CipherAlg {
  kAes128,
  kAes192,
  kAes256,
  kSerpent128,
  kSerpent192,
  kSerpent256,
  kTwofish128,
  kTwofish192,
  kTwofish256,
  kCast5_128,
};
enum class CipherMode { kEcb, kCbc, kXts, kCtr };

// QEMU's names ("aes-256", "cast5-128", ...); nullopt for an unknown name.
std::optional<CipherAlg> parse_cipher_alg(std::string_view name);
std::string_view cipher_alg_name(CipherAlg alg);
// The family as the LUKS header's cipher_name spells it: "aes", "serpent", "twofish", "cast5".
std::string_view cipher_family(CipherAlg alg);
// The member of `family` with a `key_bytes` key, if there is one.
std::optional<CipherAlg> cipher_alg_for(std::string_view family, std::size_t key_bytes);
// Key and block size in bytes.
std::size_t cipher_key_size(CipherAlg alg);
std::size_t cipher_block_size(CipherAlg alg);

std::optional<CipherMode> parse_cipher_mode(std::string_view name);
std::string_view cipher_mode_name(CipherMode mode);

// A keyed cipher in one mode. Encryption and decryption take the IV as an argument and keep
// no state between calls, so one Cipher may be used from several threads at once. The key
// schedule is wiped on destruction.
class Cipher {
 public:
  // `key` holds cipher_key_size(alg) bytes, twice that for xts (data key, then tweak key).
  // Errors (EINVAL, QEMU's words): "Unsupported cipher mode xts" for a cipher whose block is
  // not 16 bytes; a key of the wrong length.
  static Result<std::unique_ptr<Cipher>> create(CipherAlg alg, CipherMode mode, const uint8_t* key,
                                                std::size_t key_len);
  ~Cipher();
  Cipher(const Cipher&) = delete;
  Cipher& operator=(const Cipher&) = delete;

  CipherAlg alg() const { return alg_; }
  CipherMode mode() const { return mode_; }
  std::size_t block_size() const;
  // Bytes of IV encrypt()/decrypt() read: the block size (none needed for ecb).
  std::size_t iv_size() const { return block_size(); }

  // A working context borrowed from the cipher for a run of calls on one thread (OpenSSL's
  // contexts carry state from one call to the next, so each thread needs its own); cheaper
  // than Cipher::encrypt()/decrypt() once per sector. Given back when destroyed; must not
  // outlive the cipher.
  class Session {
   public:
    struct Contexts;  // OpenSSL's contexts (opaque)
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // As Cipher::encrypt()/decrypt().
    void encrypt(uint8_t* buf, std::size_t len, const uint8_t* iv);
    void decrypt(uint8_t* buf, std::size_t len, const uint8_t* iv);

   private:
    friend class Cipher;
    Session(const Cipher& cipher, Contexts* contexts) : cipher_(cipher), contexts_(contexts) {}
    const Cipher& cipher_;
    Contexts* contexts_;  // null: the nettle path
  };
  Session session() const;

  // En/decrypts `len` bytes in place starting from `iv`. REQUIRES: len is a multiple of the
  // block size (any length for ctr; at least one block for xts).
  void encrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) const;
  void decrypt(uint8_t* buf, std::size_t len, const uint8_t* iv) const;

 private:
  Cipher(CipherAlg alg, CipherMode mode, const nettle_cipher& meta);
  void nettle_crypt(bool encrypt, uint8_t* buf, std::size_t len, const uint8_t* iv) const;

  CipherAlg alg_;
  CipherMode mode_;
  const nettle_cipher* meta_;
  std::vector<uint8_t> enc_ctx_;    // data key, encryption schedule
  std::vector<uint8_t> dec_ctx_;    // data key, decryption schedule
  std::vector<uint8_t> tweak_ctx_;  // xts: tweak key, encryption schedule
  // The OpenSSL path (null: nettle's): keyed templates, and the contexts sessions gave back.
  std::unique_ptr<Session::Contexts> template_;
  mutable std::mutex pool_mutex_;
  mutable std::vector<Session::Contexts*> pool_;
};

}  // namespace qblock::crypto
