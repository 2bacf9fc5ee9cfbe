// IV generators: the per-sector initialisation vector of dm-crypt/LUKS ("plain", "plain64",
// "essiv:HASH").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "qblock/error.h"

namespace qblock::crypto {

enum class IvGenAlg { kPlain, kPlain64, kEssiv };

std::optional<IvGenAlg> parse_ivgen_alg(std::string_view name);
std::string_view ivgen_alg_name(IvGenAlg alg);

// Computes the IV of a sector. Immutable after creation: thread-safe.
class IvGen {
 public:
  // `cipher` and `hash` matter for essiv only: its cipher is `cipher`'s family keyed with
  // hash(master_key) (so the hash's digest must be a key size of the family). Errors
  // (EINVAL, QEMU's words): "No AES cipher with key size 20 available" (Serpent, Twofish
  // likewise), "Cipher cast5-128 not supported with essiv".
  static Result<std::unique_ptr<IvGen>> create(IvGenAlg alg, CipherAlg cipher, HashAlg hash,
                                               const uint8_t* master_key, std::size_t key_len);

  IvGenAlg alg() const { return alg_; }

  // Writes the IV of `sector` into iv[0, iv_len): plain is the sector number's low 32 bits,
  // plain64 all 64, little endian and zero padded; essiv is plain64 encrypted with the ESSIV
  // cipher (iv_len is then that cipher's block size).
  void compute(uint64_t sector, uint8_t* iv, std::size_t iv_len) const;

 private:
  explicit IvGen(IvGenAlg alg) : alg_(alg) {}

  IvGenAlg alg_;
  std::unique_ptr<Cipher> essiv_;  // ECB, keyed with hash(master key)
};

}  // namespace qblock::crypto
