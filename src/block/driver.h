// The driver-author API: how a driver is described in the registry, how it reads its
// options and opens its children. Users of the block layer include qblock/*.h instead.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"

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
  std::string_view name;
  NodeKind kind;
  OpenFunction open;
  ProbeFunction probe;  // formats only; may be nullptr
  // QEMU words its unknown-option error by whether the driver has a protocol name
  // ("Block protocol 'blkdebug' doesn't support ...") or not ("Block format 'raw' ...").
  bool has_protocol_name = false;
};

// The registry (src/block/registry.cc): every driver, in one place.
const std::vector<DriverEntry>& driver_registry();
const DriverEntry* find_driver(std::string_view name);

// Opens the node described by `options` (driver, generic options, its own options and its
// children). `default_driver` is used when the tree has no "driver" key (e.g. "file" for a
// child given only a filename). Errors carry QEMU's messages.
Task<Result<NodePtr>> open_node(EventLoop& loop, Options options, OpenFlags flags,
                                std::string_view default_driver);

// Opens the child `key` of `options` (an object subtree, or a filename string when
// `allow_filename` is set) with the given role and attaches nothing: the caller adds it.
// Removes the key. ENOENT-like error when missing and `required`.
Task<Result<NodePtr>> open_child(OpenContext& ctx, Options& options, std::string_view key,
                                 std::string_view default_driver, bool required = true);

// Option readers: take (remove) the key and convert it. nullopt when absent. Errors carry
// QEMU's "Parameter 'x' expects ..." messages.
Result<std::optional<std::string>> take_string(Options& options, std::string_view key);
Result<std::optional<uint64_t>> take_size(Options& options, std::string_view key);
Result<std::optional<bool>> take_bool(Options& options, std::string_view key);

}  // namespace qblock
