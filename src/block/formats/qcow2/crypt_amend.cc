// amend's LUKS key slot options on LUKS-encrypted images (qcow2-format.md §9.3): slots added
// for a new passphrase or erased, in the LUKS area the header extension points at.
#include <fmt/format.h>

#include "block/formats/qcow2/qcow2_node.h"
#include "crypto/luks.h"
#include "crypto/random.h"
#include "qblock/user_objects.h"

namespace qblock::qcow2 {

namespace {

Error invalid(std::string text) { return Error::with_message(EINVAL, std::move(text)); }

// The master key from the first active slot `password` opens (empty: none), and in
// `matching` every active slot it opens.
Task<Result<SecretBytes>> try_slots(BlockNode& file, uint64_t area, const crypto::LuksHeader& h,
                                    const crypto::LuksParams& params, const SecretBytes& password,
                                    std::vector<std::size_t>* matching) {
  const std::size_t material_bytes = crypto::luks_split_key_size(h);
  AlignedBuffer material((material_bytes + 511) / 512 * 512, 4096);
  SecretBytes found;
  for (std::size_t i = 0; i < crypto::kLuksSlotCount; ++i) {
    if (!h.slots[i].active) continue;
    const uint64_t at = area + uint64_t{h.slots[i].key_offset} * crypto::kSectorSize;
    Status r = co_await file.read(at, IoVec(material.data(), material.size()));
    if (!r) co_return fail(r.error());
    SecretBytes key = crypto::luks_try_slot(h, params, i, material.data(), password);
    if (key.empty()) continue;
    if (matching) matching->push_back(i);
    if (found.empty()) found = std::move(key);
    if (!matching) break;
  }
  std::fill(material.data(), material.data() + material.size(), uint8_t{0});
  co_return found;
}

// Writes header `h` over the first sectors of the LUKS area at `area` (the rest of the last
// sector kept as it is), then flushes: the header is on disk when this returns.
Task<Status> write_luks_header(BlockNode& file, uint64_t area, const crypto::LuksHeader& h) {
  std::vector<uint8_t> raw = crypto::encode_luks_header(h);
  AlignedBuffer head((raw.size() + 511) / 512 * 512, 4096);
  Status s = co_await file.read(area, IoVec(head.data(), head.size()));
  if (!s) co_return s;
  std::copy(raw.begin(), raw.end(), head.data());
  s = co_await file.write(area, IoVec(head.data(), head.size()));
  if (!s) co_return s;
  co_return co_await file.flush();
}

}  // namespace

Task<Status> Qcow2Node::amend_luks_slots(const Qcow2AmendOptions& o) {
  if (!crypt_.luks_header || !header_.crypto_header || !crypt_.sector) {
    co_return fail(Error::with_message(ENOTSUP, "Amending encryption options is not supported"));
  }
  if (!o.encrypt_state) co_return fail(invalid("Parameter 'state' is missing"));
  const std::string& state = *o.encrypt_state;
  if (state != "active" && state != "inactive") {
    co_return fail(invalid("Parameter 'state' does not accept value '" + state + "'"));
  }
  if (o.encrypt_keyslot && *o.encrypt_keyslot >= crypto::kLuksSlotCount) {
    co_return fail(invalid(
        fmt::format("Invalid keyslot {} specified, must be between 0 and 7", *o.encrypt_keyslot)));
  }
  crypto::LuksHeader h = *crypt_.luks_header;
  const crypto::LuksParams& params = crypt_.luks_params;
  const uint64_t area = header_.crypto_header->first;
  const std::size_t material_bytes = crypto::luks_split_key_size(h);

  if (state == "active") {
    if (o.encrypt_old_secret) {
      co_return fail(invalid("'old-secret' must not be given when activating keyslots"));
    }
    if (!o.encrypt_new_secret) {
      co_return fail(invalid("'new-secret' is required to activate a keyslot"));
    }
    Result<SecretBytes> password = user_objects().secret(*o.encrypt_new_secret);
    if (!password) co_return fail(password.error());
    std::size_t slot = crypto::kLuksSlotCount;
    if (o.encrypt_keyslot) {
      slot = *o.encrypt_keyslot;
      if (h.slots[slot].active) {
        co_return fail(invalid(
            fmt::format("Refusing to overwrite active keyslot {} - please erase it first", slot)));
      }
    } else {
      for (std::size_t i = 0; i < crypto::kLuksSlotCount && slot == crypto::kLuksSlotCount; ++i) {
        if (!h.slots[i].active) slot = i;
      }
      if (slot == crypto::kLuksSlotCount) {
        co_return fail(invalid("Can't add a keyslot - all keyslots are in use"));
      }
    }
    // The master key, from the passphrase the image was opened with.
    Result<SecretBytes> opened_with = user_objects().secret(crypt_.key_secret);
    if (!opened_with) co_return fail(opened_with.error());
    Task<Result<SecretBytes>> unlocking = try_slots(*file_, area, h, params, *opened_with, nullptr);
    Result<SecretBytes> master_key = co_await std::move(unlocking);
    if (!master_key) co_return fail(master_key.error());
    if (master_key->empty()) co_return fail(crypto::luks_invalid_password());
    Result<std::vector<uint8_t>> material =
        crypto::luks_fill_slot(h, params.spec, params.hash, slot, *master_key, *password,
                               o.encrypt_iter_time.value_or(2000));
    if (!material) co_return fail(material.error());
    // The key material is stable before the header makes the slot active.
    AlignedBuffer buf((material->size() + 511) / 512 * 512, 4096);
    buf.fill(0);
    std::copy(material->begin(), material->end(), buf.data());
    std::fill(material->begin(), material->end(), 0);
    const uint64_t at = area + uint64_t{h.slots[slot].key_offset} * crypto::kSectorSize;
    Status s = co_await file_->write(at, IoVec(buf.data(), buf.size()));
    buf.fill(0);
    if (s) s = co_await file_->flush();
    if (!s) co_return s;
  } else {
    if (!o.encrypt_keyslot && !o.encrypt_old_secret) {
      co_return fail(
          invalid("To erase keyslot(s), either explicit keyslot index or the password currently "
                  "contained in them must be given"));
    }
    std::vector<std::size_t> erase;
    if (o.encrypt_keyslot) {
      const std::size_t k = *o.encrypt_keyslot;
      // QEMU 7.2's message ends in a space.
      if (!h.slots[k].active) {
        co_return fail(invalid(fmt::format("Given keyslot {} is already erased (inactive) ", k)));
      }
      erase.push_back(k);
    } else {
      Result<SecretBytes> password = user_objects().secret(*o.encrypt_old_secret);
      if (!password) co_return fail(password.error());
      Task<Result<SecretBytes>> matching = try_slots(*file_, area, h, params, *password, &erase);
      Result<SecretBytes> found = co_await std::move(matching);
      if (!found) co_return fail(found.error());
      if (erase.empty()) {
        co_return fail(invalid("No keyslots match given (old) password for erase operation"));
      }
    }
    std::size_t active = 0;
    for (const crypto::LuksKeySlot& slot : h.slots) active += slot.active ? 1 : 0;
    if (erase.size() == active && !o.force) {
      if (o.encrypt_keyslot) {
        co_return fail(invalid(
            fmt::format("Attempt to erase the only active keyslot {} which will erase all the "
                        "data in the image irreversibly - refusing operation",
                        erase[0])));
      }
      co_return fail(invalid(
          "All the active keyslots match the (old) password that was given and erasing them "
          "will erase all the data in the image irreversibly - refusing operation"));
    }
    // The header first (the slot is gone), then its key material overwritten with noise.
    for (std::size_t k : erase) {
      h.slots[k].active = false;
      h.slots[k].iterations = 0;
      h.slots[k].salt.fill(0);
    }
    Task<Status> header_written = write_luks_header(*file_, area, h);
    Status s = co_await std::move(header_written);
    if (!s) co_return s;
    AlignedBuffer noise((material_bytes + 511) / 512 * 512, 4096);
    for (std::size_t k : erase) {
      if (Status r = crypto::random_bytes(noise.data(), noise.size()); !r) co_return r;
      const uint64_t at = area + uint64_t{h.slots[k].key_offset} * crypto::kSectorSize;
      s = co_await file_->write(at, IoVec(noise.data(), noise.size()));
      if (!s) co_return s;
    }
    s = co_await file_->flush();
    if (!s) co_return s;
    crypt_.luks_header = h;
    co_return ok();
  }
  // The header makes the new slot active.
  Task<Status> header_written = write_luks_header(*file_, area, h);
  if (Status s = co_await std::move(header_written); !s) co_return s;
  crypt_.luks_header = h;
  co_return ok();
}

}  // namespace qblock::qcow2
