// The luks format: a raw LUKS1 volume (cryptsetup's format, as QEMU's "luks" driver reads
// and writes it) as a format node over its file. The payload after the header and key
// slots is the guest's disk, encrypted sector by sector (sector 0 = first payload sector);
// en/decryption runs on the event loop's worker threads (crypto/sector_crypto.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "block/driver.h"
#include "crypto/luks.h"
#include "crypto/luks_header.h"
#include "qblock/luks_image.h"

namespace qblock {

// Options: `file` (child), `key-secret` (id of the secret with the passphrase; required
// unless the open is no_io). Errors (QEMU's words): "Parameter 'key-secret' is required for
// cipher", "No secret with id 'ID'", "Invalid password, cannot unlock any keyslot" (EPERM),
// the header's validation errors (crypto/luks_header.h).
Task<Result<NodePtr>> open_luks_node(OpenContext& ctx, Options& options);

// A new LUKS volume for `options` (their filename, size and preallocation are not used):
// check_luks_image_options(), then crypto::luks_format() with the passphrase of
// options.key_secret. Errors: theirs.
Result<crypto::LuksFormatted> format_luks(const LuksImageOptions& options);

// What qemu-img info shows of an opened volume's header.
LuksInfo luks_info(const crypto::LuksHeader& header, const crypto::LuksParams& params);

// Format probe: 100 for a LUKS1 header, else 0.
int probe_luks_format(const uint8_t* header, std::size_t len);

}  // namespace qblock
