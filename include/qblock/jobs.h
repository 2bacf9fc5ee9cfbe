// Block jobs over a backing chain (public API): committing the layers above a base into it
// (qemu-img commit), rebasing an image onto another backing file (qemu-img rebase), and the
// two image operations they end with: rewriting the backing file name, emptying an image.
// The copies go through the block layer (BlockBackend, BlockNode), so a storage daemon can run
// the same code as a live job.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock {

// ---- Image operations ----

// Records `backing_file` (as given: a relative name is relative to the image's directory) and
// `backing_format` in the image's header (both empty: no backing file). For qcow2 it is one
// write of the header cluster after everything written before is stable (crash-safe, as
// QEMU's change_backing_file). The backing node `node` reads from is not replaced.
// REQUIRES: `node` writable. Errors: ENOTSUP "Operation not supported" for formats without a
// backing file (raw); EINVAL for a name over 1023 bytes or one that does not fit in the
// header cluster; write errors.
[[nodiscard]] Task<Status> change_backing_file(BlockNode& node, std::string backing_file,
                                               std::string backing_format);

// Makes the image read from its backing file again: every cluster unallocated and freed
// (qemu-img commit without -d). A qcow2 v3 image without snapshots, bitmaps, encryption or
// external data file becomes a fresh image, byte for byte what qemu-img 7.2 leaves (header,
// refcount table, one refcount block, the zeroed L1 table; the file cut after it; crash-safe
// through the dirty bit); in other images every L2 entry is cleared, not flushed.
// REQUIRES: `node` writable. Errors: ENOTSUP for formats that cannot (raw; an extended-L2
// qcow2 image that cannot be rebuilt); write errors.
[[nodiscard]] Task<Status> make_image_empty(BlockNode& node);

// ---- Commit ----

struct CommitOptions {
  // The layer committed into: 1 = the top's backing file, 2 = its backing file, ...
  uint32_t base_depth = 1;
  // Bytes per second written into the base; 0: unlimited.
  uint64_t rate_limit = 0;
  // Empty the top image afterwards (make_image_empty).
  bool empty_top = false;
  uint64_t chunk_bytes = 2u << 20;  // largest single read/write; REQUIRES: >= 512
  // Called after each extent with the bytes of the image gone through and the image's length.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Copies what the layers above the base define (top's own data and that of the images
// between) into the base, as a streaming copy: extents are found by allocation in those
// layers only; extents that read as zeros become write-zeroes (MAY_UNMAP), the rest is read
// through `top` and written. A base shorter than the top is grown first. The base is opened
// read-write for the copy (its options as the chain opened it, without taking the image locks
// again: the chain's read-only open holds them), flushed and closed; then the top is emptied
// if asked. REQUIRES: `top` writable when empty_top; options.base_depth >= 1.
// Errors: EINVAL "Image does not have a backing file" when the chain is shorter than
// base_depth; the base's open errors; the first failing status, read or write.
[[nodiscard]] Task<Status> commit_image(EventLoop& loop, BlockBackend& top, CommitOptions options);

// ---- Rebase ----

struct RebaseOptions {
  // The backing file's name and format to record (empty name: none).
  std::string backing_file;
  std::string backing_format;
  // The new backing file, opened read-only; nullptr: none (the image becomes self-contained).
  BlockBackend* new_backing = nullptr;
  // Called after each chunk compared, with the percentage to add (qemu-img's progress steps:
  // 100 / (length / 2 MiB) each).
  std::function<void(float delta)> progress;
};

// The copy of qemu-img rebase's safe mode: wherever `image` itself has no data, the old
// backing chain (the one `image` was opened with) and the new backing file are compared, and
// every range that differs is written into `image` (what the old chain showed there; zeroes
// past its end), in 2 MiB chunks and 512-byte sectors, then flushed. When the new backing
// file is an image of the old chain, only ranges the layers above it allocate are compared.
// The header is left alone. REQUIRES: `image` writable. Errors: read and write errors.
[[nodiscard]] Task<Status> rebase_copy(BlockBackend& image, RebaseOptions options);

// rebase_copy(), then change_backing_file() with options.backing_file and backing_format.
[[nodiscard]] Task<Status> rebase_image(BlockBackend& image, RebaseOptions options);

}  // namespace qblock
