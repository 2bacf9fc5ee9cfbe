// Base64 as QEMU decodes secrets and IVs: only the alphabet, '=' and newlines are allowed,
// and the decoding is glib's (incomplete trailing groups are dropped, '=' ends a group).
#pragma once

#include <string_view>

#include "qblock/error.h"
#include "qblock/secret_bytes.h"

namespace qblock::crypto {

// Errors (EINVAL, QEMU's words): "Base64 data contains invalid characters".
Result<SecretBytes> base64_decode(std::string_view text);

}  // namespace qblock::crypto
