// Creating qcow2 images with the exact layout qemu-img 7.2 produces (qcow2-format.md §15, §16):
// the metadata is planned in memory by replaying QEMU's cluster allocator, then written through
// a file protocol node. Used by `qblock create`; the qcow2 driver itself is not needed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/image.h"
#include "qblock/luks_image.h"
#include "qblock/task.h"

namespace qblock::qcow2 {

// The creation options of qemu-img's qcow2 driver: the public ones (qblock/image.h).
using Qcow2CreateOptions = qblock::Qcow2CreateOptions;

// What an encrypted image gets at creation: its crypt_method and, for LUKS (§9.3), the area
// holding the LUKS header and key material (placed after the L1 table, as qemu-img does).
struct CryptArea {
  uint32_t method = 0;
  uint64_t length = 0;        // LUKS: the area's bytes (its payload offset)
  std::vector<uint8_t> data;  // LUKS: the area's contents (header, slot 0's key material)
};

// The area for opts' encryption: for LUKS, a freshly formatted volume (PBKDF2 runs for
// about encrypt.iter_time_ms). REQUIRES: validate_create_options(opts) succeeded.
// Errors: format_luks()'s.
Result<CryptArea> prepare_crypt_area(const Qcow2CreateOptions& opts);

// Checks the options as qemu-img 7.2 does, in its order, with its messages
// (qcow2-format.md §15.4), e.g. "Cluster size must be a power of two between 512 and 2048k".
// Errors: EINVAL.
Status validate_create_options(const Qcow2CreateOptions& opts);

// One write of the planned image.
struct PlannedWrite {
  uint64_t offset;
  std::vector<uint8_t> data;
};

// The planned image: metadata writes in ascending offset order, the final file length and,
// for falloc/full, the data area that is preallocated ([data_start, file_size)).
struct Qcow2Layout {
  std::vector<PlannedWrite> writes;
  uint64_t file_size = 0;
  uint64_t data_start = 0;  // 0: no data area to preallocate
  uint64_t data_end = 0;    // with data_start: the area is [data_start, data_end)
};

// Plans the image for a virtual size of `size` bytes. Pure: no I/O.
// REQUIRES: validate_create_options(opts) succeeded.
// Errors: EFBIG for sizes whose refcount table would exceed QEMU's limit.
Result<Qcow2Layout> plan_qcow2_layout(const Qcow2CreateOptions& opts, uint64_t size,
                                      const CryptArea& crypt = {});

// Creates (or truncates) opts.filename and writes a fresh qcow2 image into it through a file
// protocol node. Without an explicit size the backing file is opened (format backing_fmt) and
// its length is used. Errors: the validation messages, "Image creation needs a size
// parameter", "Could not open 'b': ..." for the backing file, and I/O errors.
Task<Status> create_qcow2(EventLoop& loop, Qcow2CreateOptions opts);

// Writes a fresh qcow2 image of opts.size bytes into `node` (blockdev-create's "file": a
// protocol node the caller opened and keeps), emptying it first; opts.filename and opts.file
// are not used. Errors: the validation messages, "Image creation needs a size parameter"
// without opts.size, and I/O errors (the node is then left emptied).
Task<Status> create_qcow2_on_node(BlockNode& node, Qcow2CreateOptions opts);

// Creates (or truncates) a raw image file of `size` bytes with the given preallocation
// (metadata behaves as off, as for QEMU's file driver... except it is refused like QEMU).
Task<Status> create_raw(EventLoop& loop, std::string filename, uint64_t size,
                        PreallocMode preallocation, FileCreateOptions file);

// "Extent size hint is too large" (EINVAL) for a hint over UINT32_MAX.
Status validate_file_options(const FileCreateOptions& file);

}  // namespace qblock::qcow2
