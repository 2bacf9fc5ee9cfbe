// Sector encryption as LUKS and qcow2 use it: a cipher, a mode and an IV generator keyed with
// a master key, applied to 512-byte sectors each with the IV of its own sector number.
// This is the piece format drivers use (the luks driver; qcow2's encrypt.format=luks|aes):
// they pass the sector number of a buffer's first byte (guest offset / 512 for luks and
// legacy aes, host offset / 512 for LUKS inside qcow2, as QEMU).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/ivgen.h"
#include "qblock/error.h"
#include "qblock/secret_bytes.h"
#include "qblock/task.h"

namespace qblock {
class EventLoop;
}

namespace qblock::crypto {

inline constexpr std::size_t kSectorSize = 512;

// What a SectorCrypto is made of (the LUKS header's cipher spec, or qcow2's fixed AES).
struct SectorCryptoSpec {
  CipherAlg cipher = CipherAlg::kAes256;
  CipherMode mode = CipherMode::kXts;
  IvGenAlg ivgen = IvGenAlg::kPlain64;
  HashAlg ivgen_hash = HashAlg::kSha256;  // essiv only
};

// Immutable after creation: encrypt() and decrypt() may run on several threads at once.
// The key schedules are wiped on destruction.
class SectorCrypto {
 public:
  // `master_key` holds the cipher's key (twice its size for xts). Errors: those of
  // Cipher::create and IvGen::create.
  static Result<std::unique_ptr<SectorCrypto>> create(const SectorCryptoSpec& spec,
                                                      const SecretBytes& master_key);

  const SectorCryptoSpec& spec() const { return spec_; }

  // En/decrypts buf[0, len) in place; `sector` is the number of its first 512-byte sector.
  // REQUIRES: len % kSectorSize == 0.
  void encrypt(uint64_t sector, uint8_t* buf, std::size_t len) const;
  void decrypt(uint64_t sector, uint8_t* buf, std::size_t len) const;

 private:
  SectorCrypto(const SectorCryptoSpec& spec, std::unique_ptr<Cipher> cipher,
               std::unique_ptr<IvGen> ivgen)
      : spec_(spec), cipher_(std::move(cipher)), ivgen_(std::move(ivgen)) {}
  void crypt(bool encrypt, uint64_t sector, uint8_t* buf, std::size_t len) const;

  SectorCryptoSpec spec_;
  std::unique_ptr<Cipher> cipher_;
  std::unique_ptr<IvGen> ivgen_;
};

enum class Direction { kEncrypt, kDecrypt };

// Runs crypto.encrypt/decrypt over buf[0, len) off the event loop, on `loop`'s worker threads
// (the pool compression uses), split into pieces of at least 64 KiB that run in parallel.
// Small buffers (up to 4 KiB) are done inline: a thread hop costs more than the cipher.
// REQUIRES: len % kSectorSize == 0; `crypto` and `buf` outlive the task.
Task<void> run_sector_crypto(EventLoop& loop, const SectorCrypto& crypto, Direction direction,
                             uint64_t sector, uint8_t* buf, std::size_t len);

}  // namespace qblock::crypto
