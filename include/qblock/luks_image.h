// LUKS1 images (the luks format): creating one as qemu-img create -f luks does, and what
// qemu-img info shows of one (its header, read without the passphrase).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock {

struct FileCreateOptions;

// qemu-img create -f luks's options (QEMU's names and defaults).
struct LuksImageOptions {
  std::string filename;
  uint64_t size = 0;
  std::optional<std::string> key_secret;  // id of the secret with the passphrase (required)
  std::string cipher_alg = "aes-256";
  std::string cipher_mode = "xts";
  std::string ivgen_alg = "plain64";
  std::optional<std::string> ivgen_hash_alg;  // essiv's default: sha256
  std::string hash_alg = "sha256";
  uint64_t iter_time_ms = 2000;
  PreallocMode preallocation = PreallocMode::kOff;
};

// Checks the options as qemu-img does before any file is touched. Errors (EINVAL, QEMU 7.2's
// words): "Parameter 'cipher-alg' does not accept value 'x'" (likewise cipher-mode,
// ivgen-alg, ivgen-hash-alg, hash-alg), "Parameter 'key-secret' is required for cipher",
// "No secret with id 'ID'", "Unsupported cipher mode xts", "No AES cipher with key size N
// available".
Status check_luks_image_options(const LuksImageOptions& options);

// The bytes of header and key slots a volume created with `options` starts with (qemu-img
// measure adds them for a LUKS-encrypted qcow2 image). Errors: check_luks_image_options's.
Result<uint64_t> luks_header_bytes(const LuksImageOptions& options);

// Creates (or truncates) options.filename as a LUKS1 volume with one key slot (slot 0) and a
// payload of `size` bytes rounded up to whole sectors, laid out as qemu-img 7.2 lays it out.
// Errors: check_luks_image_options's, "PBKDF iterations N too large to scale" (ERANGE), and
// the file's open, write and truncate errors.
[[nodiscard]] Task<Status> create_luks_image(EventLoop& loop, LuksImageOptions options);

// One key slot as qemu-img info shows it.
struct LuksSlotInfo {
  bool active = false;
  uint32_t iterations = 0;  // shown for active slots
  uint64_t key_offset = 0;  // bytes
  uint32_t stripes = 0;     // shown for active slots
};

// The LUKS header as qemu-img info shows it ("Format specific information").
struct LuksInfo {
  std::string cipher_alg;  // "aes-256"
  std::string cipher_mode;
  std::string ivgen_alg;
  std::optional<std::string> ivgen_hash_alg;  // essiv only
  std::string hash_alg;
  std::string uuid;
  std::vector<LuksSlotInfo> slots;
  uint64_t payload_offset = 0;  // bytes
  uint32_t master_key_iters = 0;
};

// Parses the header at the start of `head` (a LUKS volume of file_length bytes; for the LUKS
// header inside a qcow2 image, the length of its area). Errors: the header's validation
// messages (EINVAL).
Result<LuksInfo> parse_luks_info(const uint8_t* head, std::size_t len, uint64_t file_length);

// Where a LUKS header is described: as a luks image's format specific information, or as
// the `encrypt` tree of a qcow2 image, which names the format among the fields.
enum class LuksInfoIn { kLuksImage, kQcow2Encrypt };

// The fields qemu-img info and qemu-io's info print for `info`, in QEMU 7.2's order, as
// (key, value) pairs. Nested keys carry four more spaces of indentation per level (slots'
// entries); a key with an empty value opens a nested block ("slots:").
std::vector<std::pair<std::string, std::string>> luks_info_fields(const LuksInfo& info,
                                                                  LuksInfoIn where);

}  // namespace qblock
