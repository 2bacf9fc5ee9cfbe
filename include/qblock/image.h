// Image-level operations (public API): creating qcow2 and raw images, describing an image
// from its metadata (what qemu-img info shows), checking and repairing a qcow2 image
// (qemu-img check), and copying one image's contents into another. Opening an image for I/O is
// BlockBackend::open (qblock/block_backend.h); block status through a backing chain, for
// maps, is qblock/chain_status.h.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_backend.h"
#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/luks_image.h"
#include "qblock/task.h"

namespace qblock {

// ---- Creating images ----

// What QEMU's file protocol does to a file it creates (qemu-img create's protocol options
// `extent_size_hint` and `nocow`).
struct FileCreateOptions {
  // The file system's extent size hint (FS_IOC_FSSETXATTR), bytes; nullopt: QEMU's default of
  // 1 MiB. 0 clears it. A file system without the ioctl keeps the file as it is; a message
  // "Failed to set extent size hint: ..." (kWarning) says so when the hint was given and is
  // not 0. REQUIRES: <= UINT32_MAX (validate_file_create_options).
  std::optional<uint64_t> extent_size_hint;
  bool nocow = false;  // FS_NOCOW_FL (btrfs); ignored where unsupported, as QEMU does
};

// Errors: EINVAL "Extent size hint is too large" (over UINT32_MAX), as qemu-img 7.2.
[[nodiscard]] Status validate_file_create_options(const FileCreateOptions& options);

// The creation options of qemu-img's qcow2 driver (qemu-compat.md §3.1).
struct Qcow2CreateOptions {
  std::string filename;          // the image file to create (truncated if it exists)
  std::optional<uint64_t> size;  // virtual size; nullopt: the backing file's length
  uint64_t cluster_size = 65536;
  uint32_t version = 3;  // 2 (compat=0.10) or 3 (compat=1.1)
  bool lazy_refcounts = false;
  uint64_t refcount_bits = 16;
  PreallocMode preallocation = PreallocMode::kOff;
  std::string backing_file;  // empty: none
  std::string backing_fmt;   // empty: none
  // Do not open the backing file (qemu-img create -u); then `size` is required.
  bool unsafe_backing = false;
  uint8_t compression_type = 0;  // 0 zlib, 1 zstd
  bool extended_l2 = false;
  // qcow2-format.md §10: the external data file (empty: none), created as a raw image of the
  // virtual size (its preallocation as `preallocation`, metadata meaning none); with
  // data_file_raw it stays a raw image of the disk and every L2 table is preallocated 1:1.
  std::string data_file;
  bool data_file_raw = false;
  FileCreateOptions file;  // for the image file itself
  // Encryption: "aes" or "luks" (empty: none) and, for LUKS, its options (key_secret is
  // required for both; filename, size and preallocation are not used).
  std::string encrypt_format;
  LuksImageOptions encrypt;
};

// Checks the options as qemu-img 7.2 does, in its order, with its messages, e.g. "Cluster
// size must be a power of two between 512 and 2048k". Errors: EINVAL.
[[nodiscard]] Status validate_qcow2_create_options(const Qcow2CreateOptions& options);

// Creates (or truncates) options.filename and writes a fresh qcow2 image into it, with the
// layout qemu-img 7.2 produces. Without an explicit size the backing file is opened (format
// backing_fmt) and its length is used. Errors: the validation messages, "Image creation needs
// a size parameter", "Could not open 'b': ..." for the backing file, and I/O errors.
[[nodiscard]] Task<Status> create_qcow2_image(EventLoop& loop, Qcow2CreateOptions options);

// Creates (or truncates) a raw image file of `size` bytes, rounded up to whole 512-byte
// sectors as QEMU's file driver does, with the given preallocation.
// Errors: ENOTSUP "Unsupported preallocation mode: metadata" (as QEMU's file driver), and
// open, truncate and fallocate errors.
[[nodiscard]] Task<Status> create_raw_image(EventLoop& loop, std::string filename, uint64_t size,
                                            PreallocMode preallocation,
                                            FileCreateOptions file = {});

// ---- Describing images ----

// One internal snapshot of a qcow2 image (qcow2-format.md §8.1).
struct SnapshotInfo {
  std::string id;
  std::string name;
  uint32_t date_sec = 0;
  uint32_t date_nsec = 0;
  uint64_t vm_clock_nsec = 0;
  uint64_t vm_state_size = 0;
  std::optional<uint64_t> icount;  // nullopt: not recorded
};

// One persistent dirty bitmap of a qcow2 image (§14).
struct BitmapInfo {
  std::string name;
  bool in_use = false;        // flag "in-use": not saved consistently
  bool auto_enabled = false;  // flag "auto"
  uint64_t granularity = 0;   // bytes per bit
};

// What the qcow2 header and tables say.
struct Qcow2Info {
  uint32_t version = 3;  // 2 (compat 0.10) or 3 (compat 1.1)
  uint64_t cluster_size = 0;
  uint32_t refcount_bits = 0;
  uint8_t compression_type = 0;  // 0 zlib, 1 zstd
  bool encrypted = false;
  std::string encrypt_format;    // "aes" or "luks" when encrypted
  std::optional<LuksInfo> luks;  // encrypt_format "luks": the header inside the image
  bool lazy_refcounts = false;
  bool dirty = false;    // not cleanly shut down
  bool corrupt = false;  // marked corrupt: refused read-write until repaired
  bool extended_l2 = false;
  // qcow2-format.md §10: the external data file's name as recorded (empty: none, or an image
  // without the data-file bit) and whether it is kept a raw image (data_file_raw).
  bool has_data_file = false;
  std::string data_file;
  bool data_file_raw = false;
  std::string backing_file;    // as recorded in the image; empty: none
  std::string backing_format;  // empty: none
  std::vector<SnapshotInfo> snapshots;
  std::vector<BitmapInfo> bitmaps;  // only when the image declares them consistent
};

struct ImageInfo {
  std::string format;         // "raw" or "qcow2"
  uint64_t virtual_size = 0;  // as QEMU reports it: whole 512-byte sectors
  uint64_t file_length = 0;   // length of the image file in bytes
  // Images on remote storage (RBD): the name qemu-img shows instead of the one given (empty:
  // the given one), whether the disk size is unknown, and the storage's own cluster size
  // that qemu-img shows for raw images there (0: none).
  std::string display_filename;
  bool remote = false;
  uint64_t file_cluster_size = 0;
  // The storage's own snapshots, which qemu-img lists for raw images on RBD.
  std::vector<SnapshotInfo> file_snapshots;
  std::optional<Qcow2Info> qcow2;
  std::optional<LuksInfo> luks;  // format "luks": its header
};

// Describes the image in `filename` from its metadata alone (no format driver is opened; the
// file is opened read-only, once, for the header and the tables). `format` "raw" or "qcow2"; empty:
// probed from the magic. Errors: "Could not open 'x': ..." style open errors, "Unknown driver
// 'f'" (EINVAL) for another format, the qcow2 header's open messages, "Unsupported qcow2
// feature(s): ..." (ENOTSUP), and errors reading the snapshot table or bitmap directory.
[[nodiscard]] Task<Result<ImageInfo>> read_image_info(EventLoop& loop, std::string filename,
                                                      std::string format);

// The same for an image already open as the protocol node `file` (a file, or an image in
// memory): file_length is file.length(). `file` is only read, and stays open. Errors: as
// above, except the open errors; and read errors of `file`.
[[nodiscard]] Task<Result<ImageInfo>> read_image_info(BlockNode& file, std::string format);

// ---- Copying ----

struct CopyOptions {
  // The target already reads as zeros everywhere (a new image without backing file): source
  // extents that read as zeros are skipped instead of written as zeroes.
  bool target_is_zero = false;
  uint32_t parallel = 8;            // requests in flight; REQUIRES: >= 1
  uint64_t chunk_bytes = 2u << 20;  // largest single read/write; REQUIRES: >= 512
};

// Copies what `source` reads (through its backing chain) into `target`, for
// [0, source.length()). Extents are found with chain_status: data is read and written in
// chunks of at most chunk_bytes, up to `parallel` at once; extents that read as zeros become
// write-zeroes with MAY_UNMAP (or nothing, with target_is_zero), so sparse images stay sparse.
// Nothing is flushed: call target.flush() (or close()) for durability.
// REQUIRES: both backends on `loop`; target writable. Errors: EINVAL "Target image is smaller
// than the source"; the first failing block status, read or write (the other requests in
// flight finish first).
[[nodiscard]] Task<Status> copy_image(EventLoop& loop, BlockBackend& source, BlockBackend& target,
                                      CopyOptions options = {});

// ---- Amending images ----

// What qemu-img amend may change in a qcow2 image (qemu-compat.md §3.8); unset fields stay
// as they are. The values are already parsed; their ranges are checked by amend_image.
struct Qcow2AmendOptions {
  std::optional<std::string> compat;  // "0.10" or "v2", "1.1" or "v3"
  std::optional<bool> lazy_refcounts;
  std::optional<uint64_t> refcount_bits;  // a power of two from 1 to 64
  std::optional<std::string> backing_file;
  std::optional<std::string> backing_fmt;
  std::optional<std::string> data_file;
  std::optional<bool> data_file_raw;
  std::optional<uint64_t> size;  // virtual size; 0 (as in QEMU) changes nothing
  bool encryption = false;       // an encrypt.* option was given
  // LUKS key slots (encrypt.state, encrypt.keyslot, encrypt.new-secret, encrypt.old-secret,
  // encrypt.iter-time: secret ids and milliseconds), and amend's --force.
  std::optional<std::string> encrypt_state;
  std::optional<uint64_t> encrypt_keyslot;
  std::optional<std::string> encrypt_new_secret;
  std::optional<std::string> encrypt_old_secret;
  std::optional<uint64_t> encrypt_iter_time;
  bool force = false;
};

// Called with the percentage done of the steps that report progress (upgrade, zero-cluster
// expansion); may be empty.
using AmendProgress = std::function<void(double percent)>;

// Changes the qcow2 image open at `root` as qemu-img 7.2's amend does, in its order: upgrade
// (compat=1.1), encryption, backing file (only the current one is accepted), lazy refcounts,
// refcount width (new refcount structures written and flushed before the header switches to
// them), a header rewrite, the size, and last the downgrade (compat=0.10: zero clusters
// become data clusters, in snapshots too). A step that fails leaves the earlier ones done.
// REQUIRES: `root` opened writable. Errors carry QEMU's messages: ENOTSUP "Format driver
// 'raw' does not support option amendment" for other formats; EINVAL "Unknown compatibility
// level X", "Cannot amend the
// backing file\nYou can use 'qemu-img rebase' instead.", "Lazy refcounts only supported with
// compatibility level 1.1 and above (use compat=1.1 or greater)", "Refcount width must be a
// power of two and may not exceed 64 bits", "Cannot decrease refcount entry width to N bits:
// Cluster at offset 0x... has a refcount of R", "compat=0.10 requires refcount_bits=16",
// "Cannot downgrade an image with incompatible features 0x.. set", "Can't amend encryption
// options - encryption not present"; "Failed to turn zero into data clusters: <strerror>";
// the truncate errors of the size change; I/O errors.
[[nodiscard]] Task<Status> amend_image(BlockNode& root, Qcow2AmendOptions options,
                                       AmendProgress progress = {});

// ---- Checking and repairing ----

// Repair modes for check_image (qemu-img check -r leaks / -r all = both).
inline constexpr unsigned kRepairLeaks = 1;
inline constexpr unsigned kRepairErrors = 2;

// The counts qemu-img check reports.
struct CheckResult {
  uint64_t corruptions = 0;
  uint64_t leaks = 0;
  uint64_t check_errors = 0;  // parts of the check that could not be done (I/O errors)
  uint64_t corruptions_fixed = 0;
  uint64_t leaks_fixed = 0;
  uint64_t image_end_offset = 0;  // end of the highest cluster in use
  uint64_t total_clusters = 0;    // guest clusters
  uint64_t allocated_clusters = 0;
  uint64_t fragmented_clusters = 0;
  uint64_t compressed_clusters = 0;
};

// Checks the qcow2 image at `root` (qemu-img check) and, with `repair` (kRepairLeaks |
// kRepairErrors), repairs what that mode allows. Findings are reported one line each through
// the message sink (qblock/messages.h), in QEMU's words. REQUIRES: `root` was opened with
// OpenFlags::check set, read-only unless `repair`. Errors: ENOTSUP when `root` is not such a
// qcow2 node; EIO when a repair is impossible in this mode or a write fails.
[[nodiscard]] Task<Result<CheckResult>> check_image(BlockNode& root, unsigned repair);

}  // namespace qblock
