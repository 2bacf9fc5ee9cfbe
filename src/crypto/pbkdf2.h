// PBKDF2 (RFC 8018) with HMAC over any HashAlg, and QEMU's calibration of iteration counts
// against a time budget.
#pragma once

#include <cstddef>
#include <cstdint>

#include "crypto/hash.h"
#include "qblock/error.h"
#include "qblock/secret_bytes.h"

namespace qblock::crypto {

// Derives `out_len` bytes from `password` and `salt` with `iterations` rounds of
// HMAC-`hash`. REQUIRES: iterations >= 1. Thread-safe.
SecretBytes pbkdf2(HashAlg hash, const uint8_t* password, std::size_t password_len,
                   const uint8_t* salt, std::size_t salt_len, uint64_t iterations,
                   std::size_t out_len);

// How many iterations of pbkdf2(hash, ..., out_len) run in one second on this machine
// (measured over about 50 ms of CPU time where QEMU measures over 1 s: the result only
// scales the counts written to new headers).
uint64_t pbkdf2_iterations_per_second(HashAlg hash, std::size_t out_len);

// `per_second` scaled to `iter_time_ms` milliseconds. Errors: ERANGE, QEMU's "PBKDF
// iterations N too large to scale" when the product does not fit in 32 bits.
Result<uint32_t> scale_iterations(uint64_t per_second, uint64_t iter_time_ms);

}  // namespace qblock::crypto
