// Encrypted qcow2 images (qcow2-format.md §9): what opening one needs (the `encrypt.*` open
// options, the LUKS header inside the image file or the legacy AES key) and the sector
// cipher the node en/decrypts its data clusters with. Metadata is never encrypted.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "block/driver.h"
#include "block/formats/qcow2/header.h"
#include "crypto/luks_header.h"
#include "crypto/sector_crypto.h"

namespace qblock::qcow2 {

inline constexpr uint32_t kCryptNone = 0;
inline constexpr uint32_t kCryptAes = 1;   // §9.2
inline constexpr uint32_t kCryptLuks = 2;  // §9.3

// The encryption of an opened image.
struct Qcow2Crypt {
  uint32_t method = kCryptNone;
  // Null when the image was opened no_io without a key (qemu-img info).
  std::unique_ptr<crypto::SectorCrypto> sector;
  // LUKS only: the header inside the image file, for info.
  std::optional<crypto::LuksHeader> luks_header;
  crypto::LuksParams luks_params;
  std::string key_secret;  // the id given as encrypt.key-secret (empty: none)

  // §9.2/§9.3: legacy AES numbers sectors by guest offset, LUKS by host offset.
  uint64_t iv_sector(uint64_t guest, uint64_t host) const {
    return (method == kCryptLuks ? host : guest) / crypto::kSectorSize;
  }
};

// "aes" or "luks" for crypt_method 1 or 2.
const char* crypt_format_name(uint32_t method);

// Takes the `encrypt` options (key-secret, format) out of `options` and, for an encrypted
// image, reads its LUKS header (crypt_method 2) and unlocks it, or derives the AES key
// (crypt_method 1). An unencrypted image ignores them, as QEMU does. Errors (QEMU's words):
// "Parameter 'encrypt.key-secret' is required for cipher" (unless ctx.flags.no_io),
// "No secret with id 'ID'", "Header reported 'luks' encryption format but options specify
// 'aes'", "Parameter 'foo' is unexpected", "Invalid password, cannot unlock any keyslot"
// (EPERM), the LUKS header's validation errors, I/O.
Task<Result<Qcow2Crypt>> open_crypt(OpenContext& ctx, Options& options, BlockNode& file,
                                    const Header& header);

}  // namespace qblock::qcow2
