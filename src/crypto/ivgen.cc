// IV generators (see ivgen.h).
#include "crypto/ivgen.h"

#include <string.h>

#include <cstring>
#include <string>

namespace qblock::crypto {

std::optional<IvGenAlg> parse_ivgen_alg(std::string_view name) {
  if (name == "plain") return IvGenAlg::kPlain;
  if (name == "plain64") return IvGenAlg::kPlain64;
  if (name == "essiv") return IvGenAlg::kEssiv;
  return std::nullopt;
}

std::string_view ivgen_alg_name(IvGenAlg alg) {
  switch (alg) {
    case IvGenAlg::kPlain: return "plain";
    case IvGenAlg::kPlain64: return "plain64";
    case IvGenAlg::kEssiv: return "essiv";
  }
  return "";
}

Result<std::unique_ptr<IvGen>> IvGen::create(IvGenAlg alg, CipherAlg cipher, HashAlg hash,
                                             const uint8_t* master_key, std::size_t key_len) {
  std::unique_ptr<IvGen> g(new IvGen(alg));
  if (alg != IvGenAlg::kEssiv) return g;
  std::vector<uint8_t> salt = hash_bytes(hash, master_key, key_len);
  const std::string_view family = cipher_family(cipher);
  if (family == "cast5") {
    explicit_bzero(salt.data(), salt.size());
    return fail(Error::with_message(
        EINVAL, "Cipher " + std::string(cipher_alg_name(cipher)) + " not supported with essiv"));
  }
  std::optional<CipherAlg> essiv_alg = cipher_alg_for(family, salt.size());
  if (!essiv_alg) {
    static const std::pair<std::string_view, std::string_view> kShown[] = {
        {"aes", "AES"}, {"serpent", "Serpent"}, {"twofish", "Twofish"}};
    std::string shown(family);
    for (const auto& [f, s] : kShown) {
      if (f == family) shown = s;
    }
    explicit_bzero(salt.data(), salt.size());
    return fail(Error::with_message(EINVAL, "No " + shown + " cipher with key size " +
                                                std::to_string(salt.size()) + " available"));
  }
  Result<std::unique_ptr<Cipher>> c =
      Cipher::create(*essiv_alg, CipherMode::kEcb, salt.data(), salt.size());
  explicit_bzero(salt.data(), salt.size());
  if (!c) return fail(c.error());
  g->essiv_ = std::move(*c);
  return g;
}

void IvGen::compute(uint64_t sector, uint8_t* iv, std::size_t iv_len) const {
  std::memset(iv, 0, iv_len);
  const uint64_t n = alg_ == IvGenAlg::kPlain ? (sector & 0xffffffffu) : sector;
  const std::size_t width = alg_ == IvGenAlg::kPlain ? 4 : 8;
  for (std::size_t i = 0; i < width && i < iv_len; ++i) iv[i] = static_cast<uint8_t>(n >> (8 * i));
  if (essiv_) essiv_->encrypt(iv, iv_len, nullptr);
}

}  // namespace qblock::crypto
