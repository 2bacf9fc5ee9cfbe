// LUKS1 volumes: formatting a new header with one key slot (QEMU's layout and iteration
// calibration), and unlocking the master key from any active key slot. The volume's payload
// is then en/decrypted with the SectorCrypto it yields (sector 0 = first payload sector).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "crypto/luks_header.h"
#include "crypto/sector_crypto.h"
#include "qblock/error.h"
#include "qblock/secret_bytes.h"

namespace qblock::crypto {

struct LuksCreateOptions {
  SectorCryptoSpec spec;          // QEMU's defaults: aes-256, xts, plain64
  bool ivgen_hash_given = false;  // written into the mode string ("xts-plain:sha1") when set
  HashAlg hash = HashAlg::kSha256;
  uint64_t iter_time_ms = 2000;  // PBKDF2 time per key slot, QEMU's default
};

// A new volume: the header and slot 0's encrypted key material, to be written at offset 0
// and at slot 0's key offset; the payload starts at header.payload_offset sectors.
struct LuksFormatted {
  LuksHeader header;
  std::vector<uint8_t> header_bytes;  // kLuksHeaderSize bytes
  std::vector<uint8_t> key_material;  // header.slots[0].key_offset * 512
  std::unique_ptr<SectorCrypto> crypto;
};

// Checks the options as qemu-img does before touching any file. Errors (EINVAL, QEMU's
// words): "Unsupported cipher mode xts" (cast5), "No AES cipher with key size 20 available"
// (essiv), and a clear refusal of key sizes whose key material is not a whole number of
// sectors (aes/serpent/twofish-192 outside xts: QEMU 7.2 aborts on an assertion there).
Status luks_check_options(const LuksCreateOptions& options);

// The bytes luks_format() puts before the payload for `options` (header and the eight key
// slots' material, each 4 KiB aligned): what QEMU calls the payload offset.
uint64_t luks_payload_bytes(const LuksCreateOptions& options);

// Formats a volume protected by `password` in slot 0. Calibrates PBKDF2 (about 0.1 s) and
// then spends about iter_time_ms on the slot's key derivation. Errors: luks_check_options's,
// "PBKDF iterations N too large to scale" (ERANGE), the random generator's.
Result<LuksFormatted> luks_format(const LuksCreateOptions& options, const SecretBytes& password);

// Makes slot `slot_index` of `h` (whose key_bytes and key offsets are set) an active slot
// for `password`: new salt, iterations for about iter_time_ms of PBKDF2, stripes. Returns
// the slot's key material (master_key AF-split and encrypted), to be written at its key
// offset. Errors: "PBKDF iterations N too large to scale" (ERANGE), the random generator's.
Result<std::vector<uint8_t>> luks_fill_slot(LuksHeader& h, const SectorCryptoSpec& spec,
                                            HashAlg hash, std::size_t slot_index,
                                            const SecretBytes& master_key,
                                            const SecretBytes& password, uint64_t iter_time_ms);

// Tries `password` on active slot `slot` whose key material (luks_split_key_size(header)
// bytes, read from its key offset) is `material`. Returns the master key, or an empty one if
// the password is not this slot's. REQUIRES: header came from decode_luks_header.
SecretBytes luks_try_slot(const LuksHeader& header, const LuksParams& params, std::size_t slot,
                          const uint8_t* material, const SecretBytes& password);

// The payload cipher for an unlocked master key.
Result<std::unique_ptr<SectorCrypto>> luks_payload_crypto(const LuksParams& params,
                                                          const SecretBytes& master_key);

// "Invalid password, cannot unlock any keyslot" (EPERM), what opening fails with when no
// active slot takes the password.
Error luks_invalid_password();

}  // namespace qblock::crypto
