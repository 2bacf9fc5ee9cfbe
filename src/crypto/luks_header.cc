// The LUKS1 header (see luks_header.h).
#include "crypto/luks_header.h"

#include <cstring>
#include <string_view>

#include "base/byte_order.h"

namespace qblock::crypto {

namespace {

constexpr uint8_t kMagic[6] = {'L', 'U', 'K', 'S', 0xba, 0xbe};
constexpr std::size_t kCipherNameOff = 8, kCipherModeOff = 40, kHashSpecOff = 72;
constexpr std::size_t kStringLen = 32;
constexpr std::size_t kPayloadOff = 104, kKeyBytesOff = 108, kDigestOff = 112;
constexpr std::size_t kDigestSaltOff = 132, kDigestIterOff = 164, kUuidOff = 168;
constexpr std::size_t kUuidLen = 40, kSlotsOff = 208, kSlotSize = 48;

Error invalid(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

void put_string(uint8_t* p, std::size_t cap, const std::string& s) {
  std::memcpy(p, s.data(), std::min(cap - 1, s.size()));
}

// A NUL-terminated string in a fixed field; nullopt if it fills the field.
std::optional<std::string> get_string(const uint8_t* p, std::size_t cap) {
  const void* nul = std::memchr(p, 0, cap);
  if (!nul) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(p), static_cast<const uint8_t*>(nul) - p);
}

}  // namespace

bool probe_luks(const uint8_t* data, std::size_t len) {
  return len >= 8 && std::memcmp(data, kMagic, sizeof(kMagic)) == 0 && load_be16(data + 6) == 1;
}

std::vector<uint8_t> encode_luks_header(const LuksHeader& h) {
  std::vector<uint8_t> out(kLuksHeaderSize, 0);
  uint8_t* p = out.data();
  std::memcpy(p, kMagic, sizeof(kMagic));
  store_be16(p + 6, 1);
  put_string(p + kCipherNameOff, kStringLen, h.cipher_name);
  put_string(p + kCipherModeOff, kStringLen, h.cipher_mode);
  put_string(p + kHashSpecOff, kStringLen, h.hash_spec);
  store_be32(p + kPayloadOff, h.payload_offset);
  store_be32(p + kKeyBytesOff, h.key_bytes);
  std::memcpy(p + kDigestOff, h.mk_digest.data(), kLuksDigestLen);
  std::memcpy(p + kDigestSaltOff, h.mk_digest_salt.data(), kLuksSaltLen);
  store_be32(p + kDigestIterOff, h.mk_digest_iterations);
  put_string(p + kUuidOff, kUuidLen, h.uuid);
  for (std::size_t i = 0; i < kLuksSlotCount; ++i) {
    const LuksKeySlot& s = h.slots[i];
    uint8_t* q = p + kSlotsOff + i * kSlotSize;
    store_be32(q, s.active ? kLuksSlotActive : kLuksSlotDisabled);
    store_be32(q + 4, s.iterations);
    std::memcpy(q + 8, s.salt.data(), kLuksSaltLen);
    store_be32(q + 40, s.key_offset);
    store_be32(q + 44, s.stripes);
  }
  return out;
}

Result<LuksParams> luks_params(const LuksHeader& h) {
  LuksParams params;
  std::optional<HashAlg> hash = parse_hash_alg(h.hash_spec);
  if (!hash) return fail(invalid("Algorithm '" + h.hash_spec + "' not supported"));
  params.hash = *hash;
  // "MODE-IVGEN[:HASH]", or a bare "MODE" (ecb) as cryptsetup writes it.
  std::string_view mode_spec = h.cipher_mode;
  std::string_view mode_name = mode_spec.substr(0, mode_spec.find('-'));
  std::optional<CipherMode> mode = parse_cipher_mode(mode_name);
  if (!mode) return fail(invalid("Unsupported cipher mode " + std::string(mode_name)));
  params.spec.mode = *mode;
  params.spec.ivgen = IvGenAlg::kPlain64;
  if (mode_name.size() < mode_spec.size()) {
    std::string_view ivgen_spec = mode_spec.substr(mode_name.size() + 1);
    std::string_view ivgen_name = ivgen_spec.substr(0, ivgen_spec.find(':'));
    std::optional<IvGenAlg> ivgen = parse_ivgen_alg(ivgen_name);
    if (!ivgen) return fail(invalid("Unsupported IV generator " + std::string(ivgen_name)));
    params.spec.ivgen = *ivgen;
    if (ivgen_name.size() < ivgen_spec.size()) {
      const std::string ivhash_name(ivgen_spec.substr(ivgen_name.size() + 1));
      std::optional<HashAlg> ivhash = parse_hash_alg(ivhash_name);
      if (!ivhash) return fail(invalid("Algorithm '" + ivhash_name + "' not supported"));
      params.spec.ivgen_hash = *ivhash;
      params.has_ivgen_hash = true;
    } else if (*ivgen == IvGenAlg::kEssiv) {
      return fail(invalid("Missing IV generator hash specification"));
    }
  }
  const std::size_t cipher_key = h.key_bytes / (*mode == CipherMode::kXts ? 2 : 1);
  std::optional<CipherAlg> cipher = cipher_alg_for(h.cipher_name, cipher_key);
  if (!cipher || (*mode == CipherMode::kXts && h.key_bytes % 2)) {
    return fail(invalid("Cipher name '" + h.cipher_name + "' with key size " +
                        std::to_string(h.key_bytes) + " bytes is not supported"));
  }
  params.spec.cipher = *cipher;
  if (*mode == CipherMode::kXts && cipher_block_size(*cipher) != 16) {
    return fail(invalid("Unsupported cipher mode xts"));
  }
  return params;
}

Result<LuksHeader> decode_luks_header(const uint8_t* data, std::size_t len, uint64_t file_size) {
  if (len < kLuksHeaderSize || std::memcmp(data, kMagic, sizeof(kMagic)) != 0) {
    return fail(invalid("Volume is not in LUKS format"));
  }
  if (const uint16_t v = load_be16(data + 6); v != 1) {
    return fail(invalid("LUKS version " + std::to_string(v) + " is not supported"));
  }
  LuksHeader h;
  std::optional<std::string> name = get_string(data + kCipherNameOff, kStringLen);
  std::optional<std::string> mode = get_string(data + kCipherModeOff, kStringLen);
  std::optional<std::string> hash = get_string(data + kHashSpecOff, kStringLen);
  std::optional<std::string> uuid = get_string(data + kUuidOff, kUuidLen);
  if (!name || !mode || !hash || !uuid) {
    return fail(invalid("LUKS header has an unterminated string field"));
  }
  h.cipher_name = *name;
  h.cipher_mode = *mode;
  h.hash_spec = *hash;
  h.uuid = *uuid;
  h.payload_offset = load_be32(data + kPayloadOff);
  h.key_bytes = load_be32(data + kKeyBytesOff);
  std::memcpy(h.mk_digest.data(), data + kDigestOff, kLuksDigestLen);
  std::memcpy(h.mk_digest_salt.data(), data + kDigestSaltOff, kLuksSaltLen);
  h.mk_digest_iterations = load_be32(data + kDigestIterOff);
  for (std::size_t i = 0; i < kLuksSlotCount; ++i) {
    const uint8_t* q = data + kSlotsOff + i * kSlotSize;
    LuksKeySlot& s = h.slots[i];
    const uint32_t active = load_be32(q);
    if (active != kLuksSlotActive && active != kLuksSlotDisabled) {
      return fail(invalid("Keyslot " + std::to_string(i) + " state is corrupted"));
    }
    s.active = active == kLuksSlotActive;
    s.iterations = load_be32(q + 4);
    std::memcpy(s.salt.data(), q + 8, kLuksSaltLen);
    s.key_offset = load_be32(q + 40);
    s.stripes = load_be32(q + 44);
  }

  Result<LuksParams> params = luks_params(h);
  if (!params) return fail(params.error());
  if ((uint64_t{h.key_bytes} * kLuksStripes) % kSectorSize != 0) {
    // QEMU 7.2 asserts on such volumes; qblock refuses them.
    return fail(Error::with_message(ENOTSUP, "LUKS key size " + std::to_string(h.key_bytes) +
                                                 " gives key material that is not a whole "
                                                 "number of sectors"));
  }
  if (h.mk_digest_iterations == 0) {
    return fail(invalid("LUKS header has a master key digest iteration count of 0"));
  }
  const uint64_t payload = uint64_t{h.payload_offset} * kSectorSize;
  if (payload > file_size) {
    return fail(invalid("LUKS payload is overlapping with the header"));
  }
  const uint64_t material = uint64_t{h.key_bytes} * kLuksStripes;
  const uint64_t material_sectors = (material + kSectorSize - 1) / kSectorSize;
  for (std::size_t i = 0; i < kLuksSlotCount; ++i) {
    const LuksKeySlot& s = h.slots[i];
    const std::string slot = "Keyslot " + std::to_string(i);
    if (s.stripes != kLuksStripes) {
      return fail(invalid(slot + " is corrupted (stripes " + std::to_string(s.stripes) +
                          " != " + std::to_string(kLuksStripes) + ")"));
    }
    if (s.active && s.iterations == 0) {
      return fail(invalid(slot + " is corrupted (iteration count 0)"));
    }
    const uint64_t start = s.key_offset;
    const uint64_t end = start + material_sectors;
    if (start * kSectorSize < kLuksHeaderSize) {
      return fail(invalid(slot + " is overlapping with the LUKS header"));
    }
    if (end > h.payload_offset) {
      return fail(invalid(slot + " is overlapping with the encrypted payload"));
    }
    for (std::size_t j = 0; j < i; ++j) {
      const uint64_t other = h.slots[j].key_offset;
      if (start < other + material_sectors && other < end) {
        return fail(invalid("Keyslots " + std::to_string(j) + " and " + std::to_string(i) +
                            " are overlapping in the header"));
      }
    }
  }
  return h;
}

}  // namespace qblock::crypto
