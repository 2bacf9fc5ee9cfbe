// The driver-author API (installed with the library): how a driver is described in the
// registry, how it reads its options and opens its children. A driver derives from BlockNode
// (qblock/block_node.h) and implements its protected do_* hooks; io_uring operations for
// protocol drivers are in qblock/driver/uring.h. Users of the block layer include only
// qblock/*.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock {

// What a driver's open function receives.
struct OpenContext {
  EventLoop& loop;
  OpenFlags flags;  // already updated from this node's generic options
};

using NodePtr = std::unique_ptr<BlockNode>;
// Opens a node from `options`, removing every key it understands. Keys left over are
// reported by the caller as unsupported.
using OpenFunction = Task<Result<NodePtr>> (*)(OpenContext& ctx, Options& options);
// Scores how likely `header` (the first bytes of a file) is this format; 0 = not at all.
using ProbeFunction = int (*)(const uint8_t* header, std::size_t len);

struct DriverEntry {
  std::string_view name;  // REQUIRES: storage that outlives the registry (a string literal)
  NodeKind kind;
  OpenFunction open;
  ProbeFunction probe;  // formats only; may be nullptr
  // QEMU words its unknown-option error by whether the driver has a protocol name
  // ("Block protocol 'blkdebug' doesn't support ...") or not ("Block format 'raw' ...").
  bool has_protocol_name = false;
};

// The registry (src/block/registry.cc): every in-tree driver, in one place, followed by the
// drivers added with register_driver(), in the order they were added.
const std::vector<DriverEntry>& driver_registry();
// The driver called `name`, or nullptr.
const DriverEntry* find_driver(std::string_view name);

// Adds an out-of-tree driver to the registry, so that option trees ("driver": name) and
// format probing find it. Called explicitly by the embedding program, typically once at
// startup (there is no registration through static constructors).
// Errors: EEXIST "Driver 'name' is already registered".
// REQUIRES: no open or probe is running on any thread (the registry is not locked);
// entry.open != nullptr.
[[nodiscard]] Status register_driver(DriverEntry entry);

// Opens the node described by `options` (driver, generic options, its own options and its
// children). `default_driver` is used when the tree has no "driver" key (e.g. "file" for a
// child given only a filename). Errors carry QEMU's messages.
[[nodiscard]] Task<Result<NodePtr>> open_node(EventLoop& loop, Options options, OpenFlags flags,
                                              std::string_view default_driver);

// Opens the child `key` of `options` (an object subtree, or a filename string when
// `allow_filename` is set) with the given role and attaches nothing: the caller adds it.
// Removes the key. ENOENT-like error when missing and `required`.
[[nodiscard]] Task<Result<NodePtr>> open_child(OpenContext& ctx, Options& options,
                                               std::string_view key,
                                               std::string_view default_driver,
                                               bool required = true);

// Option readers: take (remove) the key and convert it. nullopt when absent. Errors carry
// QEMU's "Parameter 'x' expects ..." messages.
[[nodiscard]] Result<std::optional<std::string>> take_string(Options& options,
                                                             std::string_view key);
[[nodiscard]] Result<std::optional<uint64_t>> take_size(Options& options, std::string_view key);
[[nodiscard]] Result<std::optional<bool>> take_bool(Options& options, std::string_view key);

}  // namespace qblock
