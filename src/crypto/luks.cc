// LUKS1 volumes (see luks.h).
#include "crypto/luks.h"

#include <nettle/memops.h>

#include <cstdio>

#include "crypto/afsplit.h"
#include "crypto/pbkdf2.h"
#include "crypto/random.h"

namespace qblock::crypto {

namespace {

constexpr uint32_t kMinIterations = 1000;

std::size_t key_bytes_of(const SectorCryptoSpec& spec) {
  return cipher_key_size(spec.cipher) * (spec.mode == CipherMode::kXts ? 2 : 1);
}

Result<std::string> new_uuid() {
  uint8_t b[16];
  if (Status s = random_bytes(b, sizeof(b)); !s) return fail(s.error());
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  char text[37];
  std::snprintf(text, sizeof(text),
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return std::string(text);
}

// The master key's digest as the header stores it.
SecretBytes mk_digest(const LuksHeader& h, HashAlg hash, const SecretBytes& master_key) {
  return pbkdf2(hash, master_key.data(), master_key.size(), h.mk_digest_salt.data(), kLuksSaltLen,
                h.mk_digest_iterations, kLuksDigestLen);
}

}  // namespace

Status luks_check_options(const LuksCreateOptions& options) {
  const SectorCryptoSpec& spec = options.spec;
  if (spec.mode == CipherMode::kXts && cipher_block_size(spec.cipher) != 16) {
    return fail(Error::with_message(EINVAL, "Unsupported cipher mode xts"));
  }
  const std::size_t split = key_bytes_of(spec) * kLuksStripes;
  if (split % kSectorSize != 0) {
    return fail(Error::with_message(
        ENOTSUP, "Cipher " + std::string(cipher_alg_name(spec.cipher)) + " in mode " +
                     std::string(cipher_mode_name(spec.mode)) +
                     " is not supported: its key material is not a whole number of sectors"));
  }
  // The ESSIV cipher must exist for this family and hash: try it with a dummy key.
  SecretBytes dummy(key_bytes_of(spec));
  Result<std::unique_ptr<SectorCrypto>> c = SectorCrypto::create(spec, dummy);
  if (!c) return fail(c.error());
  return ok();
}

uint64_t luks_payload_bytes(const LuksCreateOptions& options) {
  const std::size_t split_len = key_bytes_of(options.spec) * kLuksStripes;
  const uint64_t slot_bytes = (split_len + kLuksAlignment - 1) / kLuksAlignment * kLuksAlignment;
  return kLuksAlignment + kLuksSlotCount * slot_bytes;
}

Result<std::vector<uint8_t>> luks_fill_slot(LuksHeader& h, const SectorCryptoSpec& spec,
                                            HashAlg hash, std::size_t slot_index,
                                            const SecretBytes& master_key,
                                            const SecretBytes& password, uint64_t iter_time_ms) {
  const std::size_t key_bytes = h.key_bytes;
  LuksKeySlot& slot = h.slots[slot_index];
  if (Status s = random_bytes(slot.salt.data(), kLuksSaltLen); !s) return fail(s.error());
  Result<uint32_t> slot_iters =
      scale_iterations(pbkdf2_iterations_per_second(hash, key_bytes), iter_time_ms);
  if (!slot_iters) return fail(slot_iters.error());
  slot.iterations = std::max(kMinIterations, *slot_iters);
  slot.stripes = kLuksStripes;
  SecretBytes slot_key = pbkdf2(hash, password.data(), password.size(), slot.salt.data(),
                                kLuksSaltLen, slot.iterations, key_bytes);
  Result<SecretBytes> split = af_split(hash, master_key, kLuksStripes);
  if (!split) return fail(split.error());
  Result<std::unique_ptr<SectorCrypto>> slot_crypto = SectorCrypto::create(spec, slot_key);
  if (!slot_crypto) return fail(slot_crypto.error());
  (*slot_crypto)->encrypt(0, split->data(), split->size());
  slot.active = true;
  return std::vector<uint8_t>(split->data(), split->data() + split->size());
}

Result<LuksFormatted> luks_format(const LuksCreateOptions& options, const SecretBytes& password) {
  if (Status s = luks_check_options(options); !s) return fail(s.error());
  const SectorCryptoSpec& spec = options.spec;
  const std::size_t key_bytes = key_bytes_of(spec);
  LuksFormatted out;
  LuksHeader& h = out.header;
  h.cipher_name = std::string(cipher_family(spec.cipher));
  h.cipher_mode =
      std::string(cipher_mode_name(spec.mode)) + "-" + std::string(ivgen_alg_name(spec.ivgen));
  if (spec.ivgen == IvGenAlg::kEssiv || options.ivgen_hash_given) {
    h.cipher_mode += ":" + std::string(hash_alg_name(spec.ivgen_hash));
  }
  h.hash_spec = std::string(hash_alg_name(options.hash));
  h.key_bytes = static_cast<uint32_t>(key_bytes);

  SecretBytes master_key(key_bytes);
  if (Status s = random_bytes(master_key.data(), key_bytes); !s) return fail(s.error());
  if (Status s = random_bytes(h.mk_digest_salt.data(), kLuksSaltLen); !s) return fail(s.error());
  Result<std::string> uuid = new_uuid();
  if (!uuid) return fail(uuid.error());
  h.uuid = *uuid;

  // QEMU's calibration: the digest gets an eighth of the time budget, the slot all of it.
  Result<uint32_t> mk_iters = scale_iterations(
      pbkdf2_iterations_per_second(options.hash, kLuksDigestLen), options.iter_time_ms);
  if (!mk_iters) return fail(mk_iters.error());
  h.mk_digest_iterations = std::max(kMinIterations, *mk_iters / 8);
  SecretBytes digest = mk_digest(h, options.hash, master_key);
  std::copy(digest.data(), digest.data() + kLuksDigestLen, h.mk_digest.begin());

  // Layout: slot areas of the key material rounded up to 4 KiB, from 4 KiB on.
  const std::size_t split_len = key_bytes * kLuksStripes;
  const uint64_t slot_sectors =
      (split_len + kLuksAlignment - 1) / kLuksAlignment * kLuksAlignment / kSectorSize;
  const uint64_t first = kLuksAlignment / kSectorSize;
  for (std::size_t i = 0; i < kLuksSlotCount; ++i) {
    h.slots[i].key_offset = static_cast<uint32_t>(first + i * slot_sectors);
    h.slots[i].stripes = kLuksStripes;
  }
  h.payload_offset = static_cast<uint32_t>(first + kLuksSlotCount * slot_sectors);

  Result<std::vector<uint8_t>> material =
      luks_fill_slot(h, spec, options.hash, 0, master_key, password, options.iter_time_ms);
  if (!material) return fail(material.error());
  out.key_material = std::move(*material);

  Result<std::unique_ptr<SectorCrypto>> payload = SectorCrypto::create(spec, master_key);
  if (!payload) return fail(payload.error());
  out.crypto = std::move(*payload);
  out.header_bytes = encode_luks_header(h);
  return out;
}

SecretBytes luks_try_slot(const LuksHeader& header, const LuksParams& params, std::size_t slot,
                          const uint8_t* material, const SecretBytes& password) {
  const LuksKeySlot& s = header.slots[slot];
  SecretBytes slot_key = pbkdf2(params.hash, password.data(), password.size(), s.salt.data(),
                                kLuksSaltLen, s.iterations, header.key_bytes);
  Result<std::unique_ptr<SectorCrypto>> crypto = SectorCrypto::create(params.spec, slot_key);
  if (!crypto) return SecretBytes();
  const std::size_t len = luks_split_key_size(header);
  SecretBytes split(material, len);
  (*crypto)->decrypt(0, split.data(), len);
  SecretBytes master_key = af_merge(params.hash, split, header.key_bytes, s.stripes);
  SecretBytes digest = mk_digest(header, params.hash, master_key);
  if (!nettle_memeql_sec(digest.data(), header.mk_digest.data(), kLuksDigestLen)) {
    return SecretBytes();
  }
  return master_key;
}

Result<std::unique_ptr<SectorCrypto>> luks_payload_crypto(const LuksParams& params,
                                                          const SecretBytes& master_key) {
  return SectorCrypto::create(params.spec, master_key);
}

Error luks_invalid_password() {
  return Error::with_message(EPERM, "Invalid password, cannot unlock any keyslot");
}

}  // namespace qblock::crypto
