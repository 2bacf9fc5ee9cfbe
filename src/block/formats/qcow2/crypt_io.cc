// Data clusters of encrypted images (qcow2-format.md §9): reads decrypt, writes encrypt a
// copy, both on the event loop's worker threads. Metadata I/O never comes here.
#include <nlohmann/json.hpp>

#include "base/check.h"
#include "block/formats/qcow2/qcow2_node.h"
#include "qblock/luks_image.h"

namespace qblock::qcow2 {

using crypto::kSectorSize;

void Qcow2Node::set_crypt(Qcow2Crypt crypt) {
  crypt_ = std::move(crypt);
  if (!encrypted()) return;
  // Every sector has its own IV: the request layer pads anything smaller (read-modify-write).
  limits_.request_alignment = std::max<uint32_t>(limits_.request_alignment, kSectorSize);
}

Task<Status> Qcow2Node::read_decrypted(uint64_t guest, uint64_t host, IoVec qiov) {
  if (!crypt_.sector) co_return fail(Error::io("The image was opened without its key"));
  CHECK(guest % kSectorSize == 0 && host % kSectorSize == 0 && qiov.size() % kSectorSize == 0);
  if (qiov.size() == 0) co_return ok();
  AlignedBuffer bounce(qiov.size(), 4096);
  Status s = co_await data_->read(host, IoVec(bounce.data(), bounce.size()));
  if (!s) co_return s;
  Task<void> decrypt =
      crypto::run_sector_crypto(*loop_, *crypt_.sector, crypto::Direction::kDecrypt,
                                crypt_.iv_sector(guest, host), bounce.data(), bounce.size());
  co_await std::move(decrypt);
  qiov.copy_from(0, bounce.data(), bounce.size());
  co_return ok();
}

Task<Status> Qcow2Node::encrypt_copy(uint64_t guest, uint64_t host, IoVec data, uint8_t* out) {
  if (!crypt_.sector) co_return fail(Error::io("The image was opened without its key"));
  CHECK(guest % kSectorSize == 0 && host % kSectorSize == 0 && data.size() % kSectorSize == 0);
  if (data.size() == 0) co_return ok();
  data.copy_to(0, out, data.size());
  Task<void> encrypt =
      crypto::run_sector_crypto(*loop_, *crypt_.sector, crypto::Direction::kEncrypt,
                                crypt_.iv_sector(guest, host), out, data.size());
  co_await std::move(encrypt);
  co_return ok();
}

Task<Status> Qcow2Node::write_payload(uint64_t guest, uint64_t host, IoVec data) {
  if (!encrypted()) co_return co_await data_->write(host, std::move(data));
  Task<Status> sealed = write_encrypted(guest, host, std::move(data));
  co_return co_await std::move(sealed);
}

Task<Status> Qcow2Node::write_encrypted(uint64_t guest, uint64_t host, IoVec data) {
  if (data.size() == 0) co_return ok();
  AlignedBuffer bounce(data.size(), 4096);
  Status s = co_await encrypt_copy(guest, host, data, bounce.data());
  if (!s) co_return s;
  co_return co_await data_->write(host, IoVec(bounce.data(), bounce.size()));
}

std::string Qcow2Node::filename() const {
  const std::string file = file_->filename();
  const std::string& driver = file_->driver_name();
  if (crypt_.key_secret.empty() || (driver != "file" && driver != "preallocate") ||
      file.rfind("json:", 0) == 0) {
    return file;
  }
  // QEMU names an image opened with a key by its options.
  return "json:{\"encrypt.key-secret\": " + nlohmann::json(crypt_.key_secret).dump() +
         ", \"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", \"filename\": " +
         nlohmann::json(file).dump() + "}}";
}

Options Qcow2Node::options() const {
  Options o = BlockNode::options();
  if (!crypt_.key_secret.empty()) o["encrypt"]["key-secret"] = crypt_.key_secret;
  return o;
}

}  // namespace qblock::qcow2
