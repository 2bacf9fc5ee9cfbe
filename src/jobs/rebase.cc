// rebase_image (qblock/jobs.h): qemu-img rebase's safe mode. Where the image has no data of
// its own, what the old backing chain shows is compared with the new backing file and the
// differing sectors are written into the image; the header then names the new backing file.
#include <limits.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qblock/iovec.h"
#include "qblock/jobs.h"

namespace qblock {

namespace {

constexpr uint64_t kChunkBytes = 2u << 20;  // qemu-img's IO_BUF_SIZE
constexpr uint64_t kSector = 512;

// The length of the run of sectors from the start of a and b (n bytes) that all differ, or
// all agree, as the first one does; `differ` tells which.
uint64_t sector_run(const uint8_t* a, const uint8_t* b, uint64_t n, bool* differ) {
  auto sector_differs = [&](uint64_t at) {
    const uint64_t len = std::min(kSector, n - at);
    return std::memcmp(a + at, b + at, static_cast<std::size_t>(len)) != 0;
  };
  *differ = sector_differs(0);
  uint64_t run = std::min(kSector, n);
  while (run < n && sector_differs(run) == *differ) run += std::min(kSector, n - run);
  return run;
}

// Reads [offset, offset + n) of `node` into buf; zeros past its end.
Task<Status> read_or_zero(BlockNode* node, uint64_t offset, uint8_t* buf, uint64_t n) {
  const uint64_t length = node ? node->length() : 0;
  if (offset >= length) {
    std::memset(buf, 0, static_cast<std::size_t>(n));
    co_return ok();
  }
  const uint64_t part = std::min(n, length - offset);
  if (part < n) std::memset(buf + part, 0, static_cast<std::size_t>(n - part));
  co_return co_await node->read(offset, IoVec(buf, static_cast<std::size_t>(part)));
}

// realpath(3) of a node's file name; empty when it has none (json: names, missing files).
std::string real_name(const BlockNode& node) {
  char buf[PATH_MAX];
  const std::string name = node.filename();
  if (::realpath(name.c_str(), buf) == nullptr) return {};
  return buf;
}

// The layers of the old chain above the new backing file when that file is part of the old
// chain (so only what those layers allocate can differ); nullopt otherwise.
std::optional<std::vector<BlockNode*>> layers_above(BlockNode* old_backing,
                                                    BlockNode* new_backing) {
  if (!old_backing || !new_backing) return std::nullopt;
  const std::string target = real_name(*new_backing);
  if (target.empty()) return std::nullopt;
  std::vector<BlockNode*> above;
  for (BlockNode* layer = old_backing; layer; layer = layer->child(ChildRole::kBacking)) {
    if (real_name(*layer) == target) return above;
    above.push_back(layer);
  }
  return std::nullopt;
}

// Whether a prefix of [offset, offset + n) is allocated in one of `layers`; its length.
Task<Result<std::pair<bool, uint64_t>>> allocated_in(std::vector<BlockNode*> layers,
                                                     uint64_t offset, uint64_t n) {
  for (BlockNode* layer : layers) {
    // Past the end of a layer it reads as zeros, which the new backing file may not.
    if (offset >= layer->length()) co_return std::make_pair(true, n);
    Task<Result<std::pair<bool, uint64_t>>> query =
        layer->is_allocated(offset, std::min(n, layer->length() - offset));
    Result<std::pair<bool, uint64_t>> r = co_await std::move(query);
    if (!r) co_return fail(r.error());
    if (r->first) co_return *r;
    n = std::min(n, r->second);
  }
  co_return std::make_pair(false, n);
}

}  // namespace

Task<Status> rebase_copy(BlockBackend& image, RebaseOptions options) {
  BlockNode* old_backing = image.root().child(ChildRole::kBacking);
  BlockNode* new_backing = options.new_backing ? &options.new_backing->root() : nullptr;
  const uint64_t size = image.length();
  const uint64_t step = std::min(size, kChunkBytes);
  const float local_progress = step == 0 ? 100.0f : 100.0f / static_cast<float>(size / step);
  const std::optional<std::vector<BlockNode*>> prefix = layers_above(old_backing, new_backing);
  AlignedBuffer old_buf(kChunkBytes);
  AlignedBuffer new_buf(kChunkBytes);
  for (uint64_t offset = 0, n = 0; offset < size; offset += n) {
    n = std::min(kChunkBytes, size - offset);
    // Only ranges the image leaves to its backing file can change by the rebase.
    Task<Result<std::pair<bool, uint64_t>>> query = image.root().is_allocated(offset, n);
    Result<std::pair<bool, uint64_t>> allocated = co_await std::move(query);
    if (!allocated) co_return fail(allocated.error());
    n = allocated->second;
    if (allocated->first) continue;
    if (prefix) {
      // The new backing file is in the old chain: only what the layers above it allocate
      // can differ.
      Task<Result<std::pair<bool, uint64_t>>> above = allocated_in(*prefix, offset, n);
      Result<std::pair<bool, uint64_t>> in_prefix = co_await std::move(above);
      if (!in_prefix) co_return fail(in_prefix.error());
      n = in_prefix->second;
      if (!in_prefix->first) continue;
    }
    const bool old_is_zero = offset >= (old_backing ? old_backing->length() : 0);
    Status s = co_await read_or_zero(old_backing, offset, old_buf.data(), n);
    if (!s) co_return s;
    s = co_await read_or_zero(new_backing, offset, new_buf.data(), n);
    if (!s) co_return s;
    for (uint64_t done = 0; done < n;) {
      bool differ = false;
      const uint64_t run =
          sector_run(old_buf.data() + done, new_buf.data() + done, n - done, &differ);
      if (differ && old_is_zero) {
        s = co_await image.write_zeroes(offset + done, run);
      } else if (differ) {
        s = co_await image.write(offset + done,
                                 IoVec(old_buf.data() + done, static_cast<std::size_t>(run)));
      }
      if (!s) co_return s;
      done += run;
    }
    if (options.progress) options.progress(local_progress);
  }
  co_return co_await image.flush();
}

Task<Status> rebase_image(BlockBackend& image, RebaseOptions options) {
  Task<Status> copy = rebase_copy(image, options);
  Status s = co_await std::move(copy);
  if (!s) co_return s;
  Task<Status> change = change_backing_file(image.root(), std::move(options.backing_file),
                                            std::move(options.backing_format));
  co_return co_await std::move(change);
}

}  // namespace qblock
