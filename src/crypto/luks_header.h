// The LUKS1 header (cryptsetup's "LUKS1 On-Disk Format Specification"): 592 big-endian
// bytes at offset 0 of a LUKS volume, with eight key slots whose key material lies in the
// area between the header and the payload.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/cipher.h"
#include "crypto/hash.h"
#include "crypto/sector_crypto.h"
#include "qblock/error.h"

namespace qblock::crypto {

inline constexpr std::size_t kLuksHeaderSize = 592;
inline constexpr std::size_t kLuksSlotCount = 8;
inline constexpr uint32_t kLuksStripes = 4000;
inline constexpr std::size_t kLuksSaltLen = 32;
inline constexpr std::size_t kLuksDigestLen = 20;
inline constexpr uint32_t kLuksSlotActive = 0x00AC71F3;
inline constexpr uint32_t kLuksSlotDisabled = 0x0000DEAD;
// Key material areas start and are aligned at 4 KiB (as QEMU and cryptsetup place them).
inline constexpr uint64_t kLuksAlignment = 4096;

struct LuksKeySlot {
  bool active = false;
  uint32_t iterations = 0;
  std::array<uint8_t, kLuksSaltLen> salt{};
  uint32_t key_offset = 0;  // sectors
  uint32_t stripes = kLuksStripes;
};

struct LuksHeader {
  std::string cipher_name;      // "aes"
  std::string cipher_mode;      // "xts-plain64", "cbc-essiv:sha256"
  std::string hash_spec;        // "sha256"
  uint32_t payload_offset = 0;  // sectors
  uint32_t key_bytes = 0;
  std::array<uint8_t, kLuksDigestLen> mk_digest{};
  std::array<uint8_t, kLuksSaltLen> mk_digest_salt{};
  uint32_t mk_digest_iterations = 0;
  std::string uuid;
  std::array<LuksKeySlot, kLuksSlotCount> slots{};
};

// What the header's strings mean, checked.
struct LuksParams {
  SectorCryptoSpec spec;
  HashAlg hash = HashAlg::kSha256;
  // Whether the mode string names an IV generator hash (shown by info for essiv only).
  bool has_ivgen_hash = false;
};

// Whether `data` (len bytes from offset 0) starts with the LUKS magic and version 1.
bool probe_luks(const uint8_t* data, std::size_t len);

// The header's 592 bytes.
std::vector<uint8_t> encode_luks_header(const LuksHeader& header);

// Parses and validates a header read from a volume of `file_size` bytes. Everything a
// hostile header could lie about is checked: magic and version, NUL-terminated strings, the
// cipher, mode, IV generator and hashes, key size, stripes, iteration counts, and that each
// slot's key material lies between the header and the payload without overlapping another.
// Errors (EINVAL): a sentence naming what is wrong.
Result<LuksHeader> decode_luks_header(const uint8_t* data, std::size_t len, uint64_t file_size);

// The cipher spec the header describes. Errors (EINVAL, ENOTSUP): unknown names.
Result<LuksParams> luks_params(const LuksHeader& header);

// Bytes of one slot's key material (key_bytes * stripes).
inline std::size_t luks_split_key_size(const LuksHeader& h) {
  return std::size_t{h.key_bytes} * h.slots[0].stripes;
}

}  // namespace qblock::crypto
