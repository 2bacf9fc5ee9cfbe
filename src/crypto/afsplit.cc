// The LUKS1 anti-forensic splitter (see afsplit.h).
#include "crypto/afsplit.h"

#include <nettle/nettle-meta.h>

#include <vector>

#include "base/check.h"
#include "crypto/random.h"

namespace qblock::crypto {

namespace {

// The specification's diffuse(): each digest-sized block i of `buf` is replaced by
// hash(be32(i) || block), the last, shorter block by the front of its hash.
void diffuse(HashAlg hash, uint8_t* buf, std::size_t len) {
  const nettle_hash& h = nettle_hash_of(hash);
  const std::size_t ds = h.digest_size;
  std::vector<uint8_t> ctx(h.context_size);
  std::vector<uint8_t> digest(ds);
  for (std::size_t i = 0, off = 0; off < len; ++i, off += ds) {
    const std::size_t n = std::min(ds, len - off);
    const uint8_t iv[4] = {static_cast<uint8_t>(i >> 24), static_cast<uint8_t>(i >> 16),
                           static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    h.init(ctx.data());
    h.update(ctx.data(), sizeof(iv), iv);
    h.update(ctx.data(), n, buf + off);
    h.digest(ctx.data(), ds, digest.data());
    std::copy(digest.begin(), digest.begin() + static_cast<std::ptrdiff_t>(n), buf + off);
  }
}

void xor_into(uint8_t* dst, const uint8_t* src, std::size_t len) {
  for (std::size_t i = 0; i < len; ++i) dst[i] ^= src[i];
}

}  // namespace

Result<SecretBytes> af_split(HashAlg hash, const SecretBytes& key, uint32_t stripes) {
  CHECK(stripes >= 1);
  const std::size_t len = key.size();
  SecretBytes out(len * stripes);
  SecretBytes block(len);
  if (stripes > 1) {
    if (Status s = random_bytes(out.data(), len * (stripes - 1)); !s) return fail(s.error());
  }
  for (uint32_t i = 0; i + 1 < stripes; ++i) {
    xor_into(block.data(), out.data() + i * len, len);
    diffuse(hash, block.data(), len);
  }
  uint8_t* last = out.data() + (stripes - 1) * len;
  for (std::size_t i = 0; i < len; ++i) last[i] = block.data()[i] ^ key.data()[i];
  return out;
}

SecretBytes af_merge(HashAlg hash, const SecretBytes& split, std::size_t key_len,
                     uint32_t stripes) {
  CHECK(stripes >= 1 && split.size() == key_len * stripes);
  SecretBytes block(key_len);
  for (uint32_t i = 0; i + 1 < stripes; ++i) {
    xor_into(block.data(), split.data() + i * key_len, key_len);
    diffuse(hash, block.data(), key_len);
  }
  xor_into(block.data(), split.data() + (stripes - 1) * key_len, key_len);
  return block;
}

}  // namespace qblock::crypto
