// BlockNode: one node of the block graph (protocol, format or filter) and the generic request
// layer every request passes through once: bounds/overflow checks, request alignment with
// read-modify-write padding, max_transfer splitting, flag filtering (FUA emulation,
// NO_FALLBACK, the write-zeroes fallback) and request tracking (SERIALISING, NO_WAIT).
// Users hold nodes through BlockBackend::root() and call the public methods. Drivers derive
// from it and implement the protected do_* hooks; the rest of the driver API (registry
// entries, option readers, opening children, io_uring operations) is in qblock/driver/.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "qblock/debug_event.h"
#include "qblock/error.h"
#include "qblock/iovec.h"
#include "qblock/request_flags.h"
#include "qblock/task.h"

namespace qblock {

class EventLoop;
class BlockNode;
class WaitQueue;

// A node's options tree (qemu-compat.md §5): nested objects, leaves are strings, numbers or
// booleans. Member order is kept so normalized json: filenames print like QEMU's.
using Options = nlohmann::ordered_json;

enum class NodeKind { kProtocol, kFormat, kFilter };
enum class ChildRole { kFile, kBacking, kDataFile, kImage, kRaw, kTest };
enum class PreallocMode { kOff, kMetadata, kFalloc, kFull };
enum class AioMode { kIoUring, kThreads, kNative };
enum class DiscardMode { kIgnore, kUnmap };
enum class WantZero : bool { kNo = false, kYes = true };
enum class Exact : bool { kNo = false, kYes = true };

// Parses "off", "metadata", "falloc", "full".
Result<PreallocMode> parse_prealloc_mode(std::string_view text);

// How a graph is opened; children inherit it unless their options override.
// One image on the way down a backing chain that is being opened (loop detection).
struct BackingChainLink {
  uint64_t device = 0;  // st_dev and st_ino of the image's file
  uint64_t inode = 0;
  const BackingChainLink* above = nullptr;  // the image that has this one as backing file
};

struct OpenFlags {
  bool read_only = false;
  bool direct = false;        // cache.direct: O_DIRECT
  bool no_flush = false;      // cache.no-flush: flushes are no-ops (cache=unsafe)
  bool writethrough = false;  // flush after every write (cache=writethrough/directsync)
  AioMode aio = AioMode::kIoUring;
  DiscardMode discard = DiscardMode::kIgnore;
  bool force_share = false;  // -U: do not take or check image locks
  bool probed_raw = false;   // raw chosen by probing: block 0 writes are restricted
  // Opened to be checked or repaired (qemu-img check): a format opens an image it would
  // otherwise refuse or repair first (corrupt, dirty) and leaves its metadata alone.
  bool check = false;
  // Opened only to be described (qemu-img info's BDRV_O_NO_IO): formats may skip what only
  // I/O needs, such as unlocking an encrypted image's key (no secret is then required).
  bool no_io = false;
  // Set by format drivers when they open their backing file: the images above it, which
  // it must not be (a backing file that is its own ancestor would be opened for ever).
  // Users leave it null. Valid only during the open.
  const BackingChainLink* backing_chain = nullptr;
};

// Parses a qemu cache mode name into `flags` ("none", "writeback", "writethrough",
// "directsync", "unsafe"). Returns false for an unknown name.
bool apply_cache_mode(std::string_view mode, OpenFlags& flags);

// Limits the request layer honours before calling a driver hook.
struct BlockLimits {
  uint32_t request_alignment = 1;        // offsets/lengths passed to hooks are multiples
  uint32_t memory_alignment = 1;         // buffer alignment the driver needs (O_DIRECT)
  uint64_t max_transfer = 0;             // 0: unlimited (still capped at kMaxRequestBytes)
  uint32_t pwrite_zeroes_alignment = 0;  // 0: request_alignment
  uint64_t max_pwrite_zeroes = 0;        // 0: unlimited
};

// Largest single request (QEMU's BDRV_REQUEST_MAX_BYTES).
inline constexpr uint64_t kMaxRequestBytes = 2147483136;

// Block status flags (QEMU's BDRV_BLOCK_*).
enum BlockStatusFlag : uint32_t {
  kStatusData = 0x1,
  kStatusZero = 0x2,
  kStatusOffsetValid = 0x4,
  kStatusRaw = 0x8,  // internal: ask the file child at host_offset
  kStatusAllocated = 0x10,
  kStatusEof = 0x20,
};

// The status of [offset, offset + bytes) where bytes may be shorter than asked.
struct BlockStatus {
  uint32_t flags = 0;
  uint64_t bytes = 0;
  uint64_t host_offset = 0;   // valid with kStatusOffsetValid
  BlockNode* file = nullptr;  // node host_offset refers to
};

// What qemu-io's `info` prints.
struct NodeInfo {
  std::string format_name;
  uint64_t cluster_size = 0;
  uint64_t vm_state_offset = 0;
  // Pre-formatted "Format specific information" lines (without indentation), empty if none.
  std::vector<std::pair<std::string, std::string>> format_specific;
  // QEMU drivers with a protocol name (null-co, blkdebug, blkverify) print a second "format
  // name: <protocol_name>" line; empty: none.
  std::string protocol_name;
  // The driver has no cluster size / vm state offset to tell (QEMU's get_info fails): qemu-io
  // `info` stops after the name lines.
  bool name_only = false;
};

// An edge to a child node.
struct Child {
  ChildRole role;
  std::string name;  // "file", "backing", "image", ...
  std::unique_ptr<BlockNode> node;
};

class BlockNode {
 public:
  BlockNode(EventLoop& loop, std::string driver_name, NodeKind kind);
  virtual ~BlockNode();
  BlockNode(const BlockNode&) = delete;
  BlockNode& operator=(const BlockNode&) = delete;

  const std::string& driver_name() const { return driver_name_; }
  NodeKind kind() const { return kind_; }
  EventLoop& loop() const { return *loop_; }
  const std::string& node_name() const { return node_name_; }
  void set_node_name(std::string name) { node_name_ = std::move(name); }
  const OpenFlags& open_flags() const { return flags_; }
  // Records the flags the node was opened with (open_node() calls it once after the driver).
  void set_open_flags(const OpenFlags& flags) { flags_ = flags; }
  bool read_only() const { return flags_.read_only; }
  const BlockLimits& limits() const { return limits_; }
  // Flags this node's write path honours (FUA, WRITE_UNCHANGED).
  RequestFlags supported_write_flags() const { return supported_write_flags_; }
  // Flags this node's write-zeroes path honours (FUA, MAY_UNMAP, NO_FALLBACK, ...).
  RequestFlags supported_zero_flags() const { return supported_zero_flags_; }

  // Current length in bytes (for a file: its size including in-flight extensions).
  virtual uint64_t length() const = 0;

  // Reads qiov.size() bytes at `offset`. Unaligned requests are padded; reads past the end of
  // a protocol node return zeros. Errors: EIO and driver errnos.
  Task<Status> read(uint64_t offset, IoVec qiov, RequestFlags flags = {});
  // Writes qiov at `offset`. FUA is passed down or emulated by a flush; unaligned requests
  // are padded by a serialising read-modify-write. kZeroWrite in flags makes it a
  // write-zeroes of qiov.size() bytes. Errors: EPERM on a read-only node, EBUSY for NO_WAIT.
  Task<Status> write(uint64_t offset, IoVec qiov, RequestFlags flags = {});
  // Makes [offset, offset + bytes) read as zero (block-semantics.md §3). With NO_FALLBACK it
  // either zeroes efficiently or fails with ENOTSUP (also for unaligned requests); without it,
  // a driver's ENOTSUP falls back to writing zero buffers (chunks of at most 16 MiB).
  // Unlike read/write, any length up to the offset limit is accepted; the driver gets pieces
  // of at most max_pwrite_zeroes and kMaxRequestBytes.
  // REQUIRES: NO_WAIT only together with SERIALISING (REQ-ALLOC-5).
  Task<Status> write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags = {});
  // Discards the range if the discard mode is `unmap`; otherwise succeeds doing nothing.
  // Any length up to the offset limit; the driver gets pieces of at most kMaxRequestBytes.
  Task<Status> discard(uint64_t offset, uint64_t bytes);
  // Makes completed writes stable (a no-op with cache.no-flush).
  Task<Status> flush();
  // Resizes the node. EPERM read-only; ENOTSUP if the driver cannot.
  Task<Status> truncate(uint64_t size, PreallocMode mode = PreallocMode::kOff,
                        Exact exact = Exact::kYes);
  // Status of a prefix of [offset, offset + bytes) on this node. kStatusRaw answers are
  // resolved through the file child here, so callers never see kStatusRaw.
  // REQUIRES: offset < length().
  Task<Result<BlockStatus>> block_status(uint64_t offset, uint64_t bytes, WantZero want_zero);
  // Number of bytes from `offset` (at most `bytes`) with the same allocation state in this
  // layer, and whether they are allocated here (qemu-io `map`/`alloc`).
  Task<Result<std::pair<bool, uint64_t>>> is_allocated(uint64_t offset, uint64_t bytes);

  // Flushes and releases resources of this node and its children (children first closed
  // after their parent). Idempotent.
  Task<Status> close();

  // Emits a debug event on this node (format drivers call it on their file child).
  Task<void> debug_event(DebugEvent event);
  // Breakpoint control, forwarded down the primary child chain to a node that implements
  // it (blkdebug). ENOTSUP when none does.
  Status debug_breakpoint(std::string_view event, std::string_view tag);
  Status debug_remove_breakpoint(std::string_view tag);
  Status debug_resume(std::string_view tag);
  bool debug_is_suspended(std::string_view tag);

  virtual NodeInfo info() const;
  // Normalized options of this subtree; filename() prints it QEMU's way.
  virtual Options options() const;
  virtual std::string filename() const;

  const std::vector<Child>& children() const { return children_; }
  // The child with that role, or nullptr.
  BlockNode* child(ChildRole role) const;
  // The child a filter or format forwards to by default (file, or image for blkdebug).
  virtual BlockNode* primary_child() const;
  // Adds a child; the node owns it.
  void add_child(ChildRole role, std::string name, std::unique_ptr<BlockNode> node);
  // Puts `node` in place of the child with `role` (a live job changing a backing chain: a
  // base reopened read-write, intermediate images dropped) and returns the old child, or
  // nullptr if there was none; a null `node` removes the child. The node then reads through
  // the new child (children_changed()). The caller closes the old child once no request is
  // in it.
  std::unique_ptr<BlockNode> replace_child(ChildRole role, std::unique_ptr<BlockNode> node);

  // Requests currently tracked on this node.
  std::size_t tracked_requests() const { return tracked_count_; }

 protected:
  // ---- Driver API (for driver authors; see qblock/driver/driver.h) ----
  // C++ needs the hooks in the class definition, so they live here; users never call them.
  // Driver hooks. The request layer guarantees, for do_read/do_write/do_write_zeroes:
  // offset and bytes are multiples of limits().request_alignment; bytes <= max_transfer
  // (for reads/writes) or max_pwrite_zeroes (for zeroes), and always <= kMaxRequestBytes
  // (do_discard too); flags contain only
  // supported_write_flags() (writes) or supported_zero_flags() (zeroes); the node is
  // writable for writes. The hook owns nothing it is passed.
  virtual Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) = 0;
  virtual Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) = 0;
  // Default: ENOTSUP (the request layer then writes zero buffers unless NO_FALLBACK).
  virtual Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags);
  // Default: success without effect (discard is advisory).
  virtual Task<Status> do_discard(uint64_t offset, uint64_t bytes);
  // Default: success.
  virtual Task<Status> do_flush();
  // Default: ENOTSUP.
  virtual Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact);
  // Default: data at the same offset in this node. REQUIRES: offset < length(), bytes > 0.
  virtual Task<Result<BlockStatus>> do_block_status(uint64_t offset, uint64_t bytes,
                                                    WantZero want_zero);
  // Default: nothing. Called once by close() before children are closed.
  virtual Task<Status> do_close();
  // Default: ignore the event.
  virtual Task<void> do_debug_event(DebugEvent event);
  // Breakpoint hooks; the defaults forward to primary_child() or answer ENOTSUP.
  virtual Status do_debug_breakpoint(std::string_view event, std::string_view tag);
  virtual Status do_debug_remove_breakpoint(std::string_view tag);
  virtual Status do_debug_resume(std::string_view tag);
  virtual bool do_debug_is_suspended(std::string_view tag);
  // A write-zeroes over [offset, offset+bytes) that must be serialised against everything
  // from `offset` to the end (the file driver's post-EOF fallocate, REQ-EOF-1).
  virtual bool zeroes_serialise_to_end(uint64_t offset, uint64_t bytes) const;

  // Called after replace_child(). Default: nothing (formats that cache a child pointer
  // refresh it).
  virtual void children_changed() {}

  // Computes supported flags from the primary child as a pass-through filter does
  // (REQ-FLAGS-3) and copies its limits.
  void inherit_from_child();

  EventLoop* loop_;
  OpenFlags flags_;
  BlockLimits limits_;
  RequestFlags supported_write_flags_;
  RequestFlags supported_zero_flags_;
  std::vector<Child> children_;

 private:
  class TrackedRequest;
  uint64_t transfer_limit() const;
  Task<Status> read_aligned(uint64_t offset, IoVec qiov, RequestFlags flags);
  Task<Status> write_aligned(uint64_t offset, IoVec qiov, RequestFlags flags);
  Task<Status> write_padded(uint64_t offset, IoVec qiov, RequestFlags flags);
  Task<Status> write_zeroes_tracked(uint64_t offset, uint64_t bytes, RequestFlags flags);
  Task<Status> write_zero_buffers(uint64_t offset, uint64_t bytes, RequestFlags flags);
  Task<Status> emulate_fua(RequestFlags requested, RequestFlags passed);
  TrackedRequest* find_conflict(const TrackedRequest& req) const;
  Task<Status> wait_for_conflicts(TrackedRequest& req, bool no_wait);

  std::string driver_name_;
  NodeKind kind_;
  std::string node_name_;
  // In-flight requests: an intrusive doubly linked list of TrackedRequests that live in the
  // frames of the coroutines serving them.
  TrackedRequest* tracked_head_ = nullptr;  // oldest
  TrackedRequest* tracked_tail_ = nullptr;
  std::size_t tracked_count_ = 0;
  bool closed_ = false;
};

}  // namespace qblock
