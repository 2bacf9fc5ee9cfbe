// The luks format driver (see luks.h).
#include "block/formats/luks.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "crypto/luks.h"
#include "qblock/user_objects.h"

namespace qblock {

namespace {

using crypto::kSectorSize;

// Bounce buffers are at most this large: bigger requests go through in pieces.
constexpr std::size_t kMaxBounce = 1 << 20;

class LuksFormat : public BlockNode {
 public:
  LuksFormat(EventLoop& loop, NodePtr file, crypto::LuksHeader header, crypto::LuksParams params,
             std::unique_ptr<crypto::SectorCrypto> sector_crypto, std::string key_secret)
      : BlockNode(loop, "luks", NodeKind::kFormat),
        header_(std::move(header)),
        params_(params),
        crypto_(std::move(sector_crypto)),
        key_secret_(std::move(key_secret)),
        payload_(uint64_t{header_.payload_offset} * kSectorSize) {
    add_child(ChildRole::kFile, "file", std::move(file));
    limits_.request_alignment = kSectorSize;
    limits_.memory_alignment = file_().limits().memory_alignment;
    // Writes are encrypted copies: FUA passes down; nothing else does.
    supported_write_flags_ = file_().supported_write_flags() & RequestFlag::kFua;
  }

  uint64_t length() const override {
    const uint64_t len = file_().length();
    return len > payload_ ? (len - payload_) / kSectorSize * kSectorSize : 0;
  }

  // qemu-io's info: the header as qemu-img info shows it. Nested entries are keys with
  // their extra indentation (the printer indents every key by four spaces).
  NodeInfo info() const override {
    NodeInfo i;
    i.format_name = "luks";
    i.format_specific = luks_info_fields(luks_info(header_, params_), LuksInfoIn::kLuksImage);
    return i;
  }

  // QEMU names a luks node opened with a key by its options.
  std::string filename() const override {
    const std::string file = file_().filename();
    if (key_secret_.empty() || file_().driver_name() != "file" || file.rfind("json:", 0) == 0) {
      return file;
    }
    return "json:{\"driver\": \"luks\", \"file\": {\"driver\": \"file\", \"filename\": " +
           nlohmann::json(file).dump() +
           "}, \"key-secret\": " + nlohmann::json(key_secret_).dump() + "}";
  }

  Options options() const override {
    Options o = BlockNode::options();
    if (!key_secret_.empty()) o["key-secret"] = key_secret_;
    return o;
  }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override {
    if (!crypto_) co_return fail(Error::io("The luks image was opened without its key"));
    AlignedBuffer bounce(std::min<std::size_t>(qiov.size(), kMaxBounce),
                         std::max<std::size_t>(limits_.memory_alignment, 512));
    for (std::size_t done = 0; done < qiov.size();) {
      const std::size_t n = std::min(bounce.size(), qiov.size() - done);
      Status s = co_await file_().read(payload_ + offset + done, IoVec(bounce.data(), n), flags);
      if (!s) co_return s;
      const uint64_t sector = (offset + done) / kSectorSize;
      Task<void> decrypt = crypto::run_sector_crypto(*loop_, *crypto_, crypto::Direction::kDecrypt,
                                                     sector, bounce.data(), n);
      co_await std::move(decrypt);
      qiov.copy_from(done, bounce.data(), n);
      done += n;
    }
    co_return ok();
  }

  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override {
    if (!crypto_) co_return fail(Error::io("The luks image was opened without its key"));
    AlignedBuffer bounce(std::min<std::size_t>(qiov.size(), kMaxBounce),
                         std::max<std::size_t>(limits_.memory_alignment, 512));
    for (std::size_t done = 0; done < qiov.size();) {
      const std::size_t n = std::min(bounce.size(), qiov.size() - done);
      qiov.copy_to(done, bounce.data(), n);
      const uint64_t sector = (offset + done) / kSectorSize;
      Task<void> encrypt = crypto::run_sector_crypto(*loop_, *crypto_, crypto::Direction::kEncrypt,
                                                     sector, bounce.data(), n);
      co_await std::move(encrypt);
      Status s = co_await file_().write(payload_ + offset + done, IoVec(bounce.data(), n), flags);
      if (!s) co_return s;
      done += n;
    }
    co_return ok();
  }

  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override {
    co_return co_await file_().truncate(payload_ + size, mode, exact);
  }

  // Every sector of the payload holds (encrypted) data: a hole in the file decrypts to
  // noise, not zeros. There is no host offset to show (qemu-img map: "File contains
  // external, encrypted or compressed clusters.").
  Task<Result<BlockStatus>> do_block_status(uint64_t, uint64_t bytes, WantZero) override {
    co_return BlockStatus{kStatusData | kStatusAllocated, bytes, 0, nullptr};
  }

 private:
  BlockNode& file_() const { return *child(ChildRole::kFile); }

  crypto::LuksHeader header_;
  crypto::LuksParams params_;
  std::unique_ptr<crypto::SectorCrypto> crypto_;  // null when opened no_io without a key
  std::string key_secret_;
  uint64_t payload_;
};

// What opening a volume finds: its header and, when unlocked, the payload cipher.
struct Unlocked {
  crypto::LuksHeader header;
  crypto::LuksParams params;
  std::unique_ptr<crypto::SectorCrypto> sector_crypto;  // null: not unlocked (no_io)
};

// Reads the header, validates it and, with a password, unlocks the master key.
Task<Result<Unlocked>> unlock(OpenContext& ctx, BlockNode& file,
                              std::optional<std::string> key_secret) {
  std::vector<uint8_t> head(crypto::kLuksHeaderSize);
  if (file.length() < head.size()) {
    co_return fail(Error::with_message(EINVAL, "Volume is not in LUKS format"));
  }
  Status s = co_await file.read(0, IoVec(head.data(), head.size()));
  if (!s) co_return fail(s.error());
  Result<crypto::LuksHeader> header =
      crypto::decode_luks_header(head.data(), head.size(), file.length());
  if (!header) co_return fail(header.error());
  Result<crypto::LuksParams> params = crypto::luks_params(*header);
  if (!params) co_return fail(params.error());
  Unlocked out{std::move(*header), *params, nullptr};
  if (!key_secret) {
    if (ctx.flags.no_io) co_return out;
    co_return fail(Error::with_message(EINVAL, "Parameter 'key-secret' is required for cipher"));
  }
  Result<SecretBytes> password = user_objects().secret(*key_secret);
  if (!password) co_return fail(password.error());
  std::vector<uint8_t> material(crypto::luks_split_key_size(out.header));
  SecretBytes master_key;
  for (std::size_t i = 0; i < crypto::kLuksSlotCount && master_key.empty(); ++i) {
    if (!out.header.slots[i].active) continue;
    const uint64_t at = uint64_t{out.header.slots[i].key_offset} * kSectorSize;
    Status r = co_await file.read(at, IoVec(material.data(), material.size()));
    if (!r) co_return fail(r.error());
    master_key = crypto::luks_try_slot(out.header, out.params, i, material.data(), *password);
  }
  if (master_key.empty()) co_return fail(crypto::luks_invalid_password());
  Result<std::unique_ptr<crypto::SectorCrypto>> c =
      crypto::luks_payload_crypto(out.params, master_key);
  if (!c) co_return fail(c.error());
  out.sector_crypto = std::move(*c);
  co_return out;
}

}  // namespace

Task<Result<NodePtr>> open_luks_node(OpenContext& ctx, Options& options) {
  Result<std::optional<std::string>> key_secret = take_string(options, "key-secret");
  if (!key_secret) co_return fail(key_secret.error());
  Result<NodePtr> file = co_await open_child(ctx, options, "file", "file");
  if (!file) co_return fail(file.error());
  Task<Result<Unlocked>> opening = unlock(ctx, **file, *key_secret);
  Result<Unlocked> u = co_await std::move(opening);
  if (!u) {
    (void)co_await (*file)->close();
    co_return fail(u.error());
  }
  co_return NodePtr(new LuksFormat(ctx.loop, std::move(*file), std::move(u->header), u->params,
                                   std::move(u->sector_crypto), key_secret->value_or("")));
}

int probe_luks_format(const uint8_t* header, std::size_t len) {
  return crypto::probe_luks(header, len) ? 100 : 0;
}

}  // namespace qblock
