// Creating LUKS images and describing their headers (qblock/luks_image.h).
#include <algorithm>
#include <vector>

#include "block/driver.h"
#include "block/formats/luks.h"
#include "crypto/luks.h"
#include "qblock/image.h"
#include "qblock/luks_image.h"
#include "qblock/user_objects.h"

namespace qblock {

namespace {

Error not_accepted(const std::string& param, const std::string& value) {
  return Error::with_message(EINVAL,
                             "Parameter '" + param + "' does not accept value '" + value + "'");
}

// The options as the crypto layer takes them.
Result<crypto::LuksCreateOptions> to_crypto_options(const LuksImageOptions& o) {
  crypto::LuksCreateOptions c;
  std::optional<crypto::CipherAlg> alg = crypto::parse_cipher_alg(o.cipher_alg);
  // QEMU's cipher enumeration names these too, but its luks driver has no cipher for them.
  if (!alg && (o.cipher_alg == "des" || o.cipher_alg == "3des")) {
    return fail(Error::with_message(EINVAL, "Algorithm '" + o.cipher_alg + "' not supported"));
  }
  if (!alg) return fail(not_accepted("cipher-alg", o.cipher_alg));
  std::optional<crypto::CipherMode> mode = crypto::parse_cipher_mode(o.cipher_mode);
  if (!mode) return fail(not_accepted("cipher-mode", o.cipher_mode));
  std::optional<crypto::IvGenAlg> ivgen = crypto::parse_ivgen_alg(o.ivgen_alg);
  if (!ivgen) return fail(not_accepted("ivgen-alg", o.ivgen_alg));
  if (o.ivgen_hash_alg) {
    std::optional<crypto::HashAlg> h = crypto::parse_hash_alg(*o.ivgen_hash_alg);
    if (!h) return fail(not_accepted("ivgen-hash-alg", *o.ivgen_hash_alg));
    c.spec.ivgen_hash = *h;
    c.ivgen_hash_given = true;
  }
  std::optional<crypto::HashAlg> hash = crypto::parse_hash_alg(o.hash_alg);
  if (!hash) return fail(not_accepted("hash-alg", o.hash_alg));
  c.spec.cipher = *alg;
  c.spec.mode = *mode;
  c.spec.ivgen = *ivgen;
  c.hash = *hash;
  c.iter_time_ms = o.iter_time_ms;
  return c;
}

}  // namespace

Status check_luks_image_options(const LuksImageOptions& options) {
  Result<crypto::LuksCreateOptions> c = to_crypto_options(options);
  if (!c) return fail(c.error());
  if (!options.key_secret) {
    return fail(Error::with_message(EINVAL, "Parameter 'key-secret' is required for cipher"));
  }
  Result<SecretBytes> password = user_objects().secret(*options.key_secret);
  if (!password) return fail(password.error());
  return crypto::luks_check_options(*c);
}

Result<uint64_t> luks_header_bytes(const LuksImageOptions& options) {
  if (Status s = check_luks_image_options(options); !s) return fail(s.error());
  Result<crypto::LuksCreateOptions> c = to_crypto_options(options);
  return crypto::luks_payload_bytes(*c);
}

Result<crypto::LuksFormatted> format_luks(const LuksImageOptions& options) {
  if (Status s = check_luks_image_options(options); !s) return fail(s.error());
  Result<crypto::LuksCreateOptions> c = to_crypto_options(options);
  Result<SecretBytes> password = user_objects().secret(*options.key_secret);
  return crypto::luks_format(*c, *password);
}

Task<Status> create_luks_image(EventLoop& loop, LuksImageOptions options) {
  Result<crypto::LuksFormatted> volume = format_luks(options);
  if (!volume) co_return fail(volume.error());

  Status created = co_await create_raw_image(loop, options.filename, 0, PreallocMode::kOff);
  if (!created) co_return created;
  Options tree = Options::object();
  tree["driver"] = "file";
  tree["filename"] = options.filename;
  Result<NodePtr> file = co_await open_node(loop, std::move(tree), OpenFlags{}, "file");
  if (!file) co_return fail(file.error());
  BlockNode& f = **file;
  const crypto::LuksHeader& h = volume->header;
  Status s = co_await f.write(0, IoVec(volume->header_bytes.data(), volume->header_bytes.size()));
  if (s) {
    const uint64_t at = uint64_t{h.slots[0].key_offset} * crypto::kSectorSize;
    s = co_await f.write(at, IoVec(volume->key_material.data(), volume->key_material.size()));
  }
  if (s) {
    // The payload: exactly `size` bytes after the key slots, as QEMU sizes the file.
    const uint64_t end = uint64_t{h.payload_offset} * crypto::kSectorSize + options.size;
    s = co_await f.truncate(end, options.preallocation, Exact::kYes);
  }
  if (s) s = co_await f.flush();
  Status closed = co_await f.close();
  if (!s) co_return s;
  co_return closed;
}

Result<LuksInfo> parse_luks_info(const uint8_t* head, std::size_t len, uint64_t file_length) {
  Result<crypto::LuksHeader> h = crypto::decode_luks_header(head, len, file_length);
  if (!h) return fail(h.error());
  Result<crypto::LuksParams> p = crypto::luks_params(*h);
  if (!p) return fail(p.error());
  return luks_info(*h, *p);
}

LuksInfo luks_info(const crypto::LuksHeader& header, const crypto::LuksParams& params) {
  const crypto::LuksHeader* h = &header;
  const crypto::LuksParams* p = &params;
  LuksInfo info;
  info.cipher_alg = std::string(crypto::cipher_alg_name(p->spec.cipher));
  info.cipher_mode = std::string(crypto::cipher_mode_name(p->spec.mode));
  info.ivgen_alg = std::string(crypto::ivgen_alg_name(p->spec.ivgen));
  if (p->spec.ivgen == crypto::IvGenAlg::kEssiv) {
    info.ivgen_hash_alg = std::string(crypto::hash_alg_name(p->spec.ivgen_hash));
  }
  info.hash_alg = std::string(crypto::hash_alg_name(p->hash));
  info.uuid = h->uuid;
  for (const crypto::LuksKeySlot& s : h->slots) {
    info.slots.push_back(LuksSlotInfo{s.active, s.iterations,
                                      uint64_t{s.key_offset} * crypto::kSectorSize, s.stripes});
  }
  info.payload_offset = uint64_t{h->payload_offset} * crypto::kSectorSize;
  info.master_key_iters = h->mk_digest_iterations;
  return info;
}

std::vector<std::pair<std::string, std::string>> luks_info_fields(const LuksInfo& i,
                                                                  LuksInfoIn where) {
  std::vector<std::pair<std::string, std::string>> f;
  f.emplace_back("ivgen alg", i.ivgen_alg);
  f.emplace_back("hash alg", i.hash_alg);
  f.emplace_back("cipher alg", i.cipher_alg);
  f.emplace_back("uuid", i.uuid);
  if (i.ivgen_hash_alg) f.emplace_back("ivgen hash alg", *i.ivgen_hash_alg);
  if (where == LuksInfoIn::kQcow2Encrypt) f.emplace_back("format", "luks");
  f.emplace_back("cipher mode", i.cipher_mode);
  f.emplace_back("slots", "");
  for (std::size_t n = 0; n < i.slots.size(); ++n) {
    const LuksSlotInfo& slot = i.slots[n];
    f.emplace_back("    [" + std::to_string(n) + "]", "");
    f.emplace_back("        active", slot.active ? "true" : "false");
    if (slot.active) f.emplace_back("        iters", std::to_string(slot.iterations));
    f.emplace_back("        key offset", std::to_string(slot.key_offset));
    if (slot.active) f.emplace_back("        stripes", std::to_string(slot.stripes));
  }
  f.emplace_back("payload offset", std::to_string(i.payload_offset));
  f.emplace_back("master key iters", std::to_string(i.master_key_iters));
  return f;
}

}  // namespace qblock
