// Opening an encrypted qcow2 image (see crypt.h).
#include "block/formats/qcow2/crypt.h"

#include <algorithm>
#include <vector>

#include "crypto/luks.h"
#include "qblock/user_objects.h"

namespace qblock::qcow2 {

namespace {

// §9.2: the passphrase's first 16 bytes, zero padded, as an AES-128 key.
Result<std::unique_ptr<crypto::SectorCrypto>> aes_crypto(const SecretBytes& password) {
  SecretBytes key(16);
  // An empty secret has no data() to copy from (a null pointer for memmove).
  if (!password.empty()) {
    std::copy_n(password.data(), std::min<std::size_t>(16, password.size()), key.data());
  }
  crypto::SectorCryptoSpec spec;
  spec.cipher = crypto::CipherAlg::kAes128;
  spec.mode = crypto::CipherMode::kCbc;
  spec.ivgen = crypto::IvGenAlg::kPlain64;
  return crypto::SectorCrypto::create(spec, key);
}

// §9.3: the LUKS header at the area the crypto header extension points at, unlocked with
// `password` when there is one.
Task<Status> open_luks_area(BlockNode& file, const Header& header,
                            const std::optional<SecretBytes>& password, Qcow2Crypt& out) {
  if (!header.crypto_header) {
    co_return fail(Error::with_message(EINVAL, "Could not read encryption header"));
  }
  const auto [area, area_len] = *header.crypto_header;
  if (area_len < crypto::kLuksHeaderSize || area > file.length() ||
      file.length() - area < crypto::kLuksHeaderSize) {
    co_return fail(Error::with_message(EINVAL, "Volume is not in LUKS format"));
  }
  std::vector<uint8_t> head(crypto::kLuksHeaderSize);
  Status s = co_await file.read(area, IoVec(head.data(), head.size()));
  if (!s) co_return s;
  Result<crypto::LuksHeader> h = crypto::decode_luks_header(head.data(), head.size(), area_len);
  if (!h) co_return fail(h.error());
  Result<crypto::LuksParams> params = crypto::luks_params(*h);
  if (!params) co_return fail(params.error());
  out.luks_header = std::move(*h);
  out.luks_params = *params;
  if (!password) co_return ok();
  const crypto::LuksHeader& lh = *out.luks_header;
  std::vector<uint8_t> material(crypto::luks_split_key_size(lh));
  SecretBytes master_key;
  for (std::size_t i = 0; i < crypto::kLuksSlotCount && master_key.empty(); ++i) {
    if (!lh.slots[i].active) continue;
    // Key material offsets are relative to the area (§9.3).
    const uint64_t at = area + uint64_t{lh.slots[i].key_offset} * crypto::kSectorSize;
    Status r = co_await file.read(at, IoVec(material.data(), material.size()));
    if (!r) co_return r;
    master_key = crypto::luks_try_slot(lh, out.luks_params, i, material.data(), *password);
  }
  std::fill(material.begin(), material.end(), 0);
  if (master_key.empty()) co_return fail(crypto::luks_invalid_password());
  Result<std::unique_ptr<crypto::SectorCrypto>> c =
      crypto::luks_payload_crypto(out.luks_params, master_key);
  if (!c) co_return fail(c.error());
  out.sector = std::move(*c);
  co_return ok();
}

}  // namespace

const char* crypt_format_name(uint32_t method) {
  return method == kCryptAes ? "aes" : method == kCryptLuks ? "luks" : "";
}

Task<Result<Qcow2Crypt>> open_crypt(OpenContext& ctx, Options& options, BlockNode& file,
                                    const Header& header) {
  std::optional<std::string> key_secret;
  std::optional<std::string> format;
  if (options.contains("encrypt")) {
    Options encrypt = options["encrypt"];
    options.erase("encrypt");
    if (encrypt.is_object()) {
      Result<std::optional<std::string>> k = take_string(encrypt, "key-secret");
      if (!k) co_return fail(k.error());
      key_secret = *k;
      Result<std::optional<std::string>> f = take_string(encrypt, "format");
      if (!f) co_return fail(f.error());
      format = *f;
      if (!encrypt.empty() && header.crypt_method != kCryptNone) {
        co_return fail(
            Error::with_message(EINVAL, "Parameter '" + encrypt.begin().key() + "' is unexpected"));
      }
    }
  }
  Qcow2Crypt out;
  out.method = header.crypt_method;
  if (header.crypt_method == kCryptNone) co_return out;  // QEMU ignores the options then
  if (format && *format != crypt_format_name(header.crypt_method)) {
    co_return fail(Error::with_message(
        EINVAL, std::string("Header reported '") + crypt_format_name(header.crypt_method) +
                    "' encryption format but options specify '" + *format + "'"));
  }
  std::optional<SecretBytes> password;
  if (key_secret) {
    Result<SecretBytes> p = user_objects().secret(*key_secret);
    if (!p) co_return fail(p.error());
    password = std::move(*p);
    out.key_secret = *key_secret;
  } else if (!ctx.flags.no_io) {
    co_return fail(
        Error::with_message(EINVAL, "Parameter 'encrypt.key-secret' is required for cipher"));
  }
  if (header.crypt_method == kCryptLuks) {
    Status s = co_await open_luks_area(file, header, password, out);
    if (!s) co_return fail(s.error());
    co_return out;
  }
  if (password) {
    Result<std::unique_ptr<crypto::SectorCrypto>> c = aes_crypto(*password);
    if (!c) co_return fail(c.error());
    out.sector = std::move(*c);
  }
  co_return out;
}

}  // namespace qblock::qcow2
