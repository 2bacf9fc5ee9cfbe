// The LUKS1 anti-forensic splitter (cryptsetup's LUKS1 on-disk format specification, "AF
// splitter"): a key is stored as `stripes` blocks, all of which are needed to recover it, so
// that destroying any part of a key slot destroys the key.
#pragma once

#include <cstddef>
#include <cstdint>

#include "crypto/hash.h"
#include "qblock/error.h"
#include "qblock/secret_bytes.h"

namespace qblock::crypto {

// Splits `key` into key.size() * stripes bytes, with random stripes from the system's
// generator. REQUIRES: stripes >= 1. Errors: the generator's (EIO).
Result<SecretBytes> af_split(HashAlg hash, const SecretBytes& key, uint32_t stripes);

// Recovers a key of `key_len` bytes from `split` (key_len * stripes bytes).
// REQUIRES: split.size() == key_len * stripes, stripes >= 1.
SecretBytes af_merge(HashAlg hash, const SecretBytes& split, std::size_t key_len, uint32_t stripes);

}  // namespace qblock::crypto
