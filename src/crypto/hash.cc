// Hash algorithms over nettle (see hash.h).
#include "crypto/hash.h"

#include <nettle/nettle-meta.h>

#include <array>
#include <vector>

#include "base/check.h"

namespace qblock::crypto {

namespace {

struct HashEntry {
  HashAlg alg;
  std::string_view name;
  const nettle_hash* hash;
};

const std::array<HashEntry, 7>& table() {
  static const std::array<HashEntry, 7> kTable = {{
      {HashAlg::kMd5, "md5", &nettle_md5},
      {HashAlg::kSha1, "sha1", &nettle_sha1},
      {HashAlg::kSha224, "sha224", &nettle_sha224},
      {HashAlg::kSha256, "sha256", &nettle_sha256},
      {HashAlg::kSha384, "sha384", &nettle_sha384},
      {HashAlg::kSha512, "sha512", &nettle_sha512},
      {HashAlg::kRipemd160, "ripemd160", &nettle_ripemd160},
  }};
  return kTable;
}

const HashEntry& entry(HashAlg alg) {
  for (const HashEntry& e : table()) {
    if (e.alg == alg) return e;
  }
  CHECK(false);
  return table()[0];
}

}  // namespace

std::optional<HashAlg> parse_hash_alg(std::string_view name) {
  for (const HashEntry& e : table()) {
    if (e.name == name) return e.alg;
  }
  return std::nullopt;
}

std::string_view hash_alg_name(HashAlg alg) { return entry(alg).name; }

std::size_t hash_digest_size(HashAlg alg) { return entry(alg).hash->digest_size; }

const nettle_hash& nettle_hash_of(HashAlg alg) { return *entry(alg).hash; }

std::vector<uint8_t> hash_bytes(HashAlg alg, const uint8_t* data, std::size_t len) {
  const nettle_hash& h = nettle_hash_of(alg);
  std::vector<uint8_t> ctx(h.context_size);
  std::vector<uint8_t> out(h.digest_size);
  h.init(ctx.data());
  h.update(ctx.data(), len, data);
  h.digest(ctx.data(), out.size(), out.data());
  return out;
}

}  // namespace qblock::crypto
