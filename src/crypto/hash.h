// Hash algorithms of the LUKS1 header and of the ESSIV IV generator, by QEMU's names
// ("sha256", ...), over nettle's hash implementations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

struct nettle_hash;

namespace qblock::crypto {

enum class HashAlg { kMd5, kSha1, kSha224, kSha256, kSha384, kSha512, kRipemd160 };

// The algorithm QEMU calls `name` ("md5", "sha1", "sha224", "sha256", "sha384", "sha512",
// "ripemd160"); nullopt for any other name.
std::optional<HashAlg> parse_hash_alg(std::string_view name);
// QEMU's (and LUKS's) name of `alg`.
std::string_view hash_alg_name(HashAlg alg);
// Digest length in bytes.
std::size_t hash_digest_size(HashAlg alg);
// nettle's description of `alg` (for HMAC and PBKDF2).
const nettle_hash& nettle_hash_of(HashAlg alg);

// The digest of `len` bytes at `data`. Thread-safe.
std::vector<uint8_t> hash_bytes(HashAlg alg, const uint8_t* data, std::size_t len);

}  // namespace qblock::crypto
