// The driver registry: every driver qblock has, in one place, and the generic part of
// opening a node (generic options, unknown-option errors, children).
#include <algorithm>

#include "base/check.h"
#include "block/driver.h"
#include "block/filters/blkdebug.h"
#include "block/filters/blkverify.h"
#include "block/filters/compress.h"
#include "block/filters/copy_on_read.h"
#include "block/filters/passthrough.h"
#include "block/filters/powercut.h"
#include "block/filters/preallocate.h"
#include "block/filters/quorum.h"
#include "block/formats/luks.h"
#include "block/formats/qcow2/qcow2.h"
#include "block/formats/raw.h"
#include "block/node_reference.h"
#include "block/preopened_child.h"
#include "block/protocols/file.h"
#include "block/protocols/memory.h"
#include "block/protocols/nbd.h"
#include "block/protocols/null.h"
#include "block/protocols/rbd.h"
#include "qblock/options.h"

namespace qblock {

namespace {

std::vector<DriverEntry>& registry() {
  static std::vector<DriverEntry> drivers = {
      // Protocols: where the bytes live.
      {"file", NodeKind::kProtocol, &open_file_node, nullptr, true},
      {"host_device", NodeKind::kProtocol, &open_file_node, nullptr, true},
      {"memory", NodeKind::kProtocol, &open_memory_node, nullptr, true},
      {"nbd", NodeKind::kProtocol, &open_nbd_node, nullptr, true},
      {"null-co", NodeKind::kProtocol, &open_null_node, nullptr, true},
      {"null-aio", NodeKind::kProtocol, &open_null_aio_node, nullptr, true},
      {"rbd", NodeKind::kProtocol, &open_rbd_node, nullptr, true},
      // Formats.
      {"raw", NodeKind::kFormat, &open_raw_node, nullptr},
      {"qcow2", NodeKind::kFormat, &qcow2::open_qcow2_node, &qcow2::probe_qcow2},
      {"luks", NodeKind::kFormat, &open_luks_node, &probe_luks_format},
      // Filters.
      {"passthrough", NodeKind::kFilter, &open_passthrough_node, nullptr},
      {"blkdebug", NodeKind::kFilter, &open_blkdebug_node, nullptr, true},
      {"preallocate", NodeKind::kFilter, &open_preallocate_node, nullptr},
      {"powercut", NodeKind::kFilter, &open_powercut_node, nullptr},  // tests: crash images
      {"copy-on-read", NodeKind::kFilter, &open_copy_on_read_node, nullptr},
      {"compress", NodeKind::kFilter, &open_compress_node, nullptr},
      {"blkverify", NodeKind::kFilter, &open_blkverify_node, nullptr, true},
      {"quorum", NodeKind::kFilter, &open_quorum_node, nullptr},
  };
  return drivers;
}

}  // namespace

const std::vector<DriverEntry>& driver_registry() { return registry(); }

Status register_driver(DriverEntry entry) {
  CHECK(entry.open != nullptr);
  if (find_driver(entry.name)) {
    return fail(Error::with_message(
        EEXIST, "Driver '" + std::string(entry.name) + "' is already registered"));
  }
  registry().push_back(entry);
  return ok();
}

const DriverEntry* find_driver(std::string_view name) {
  for (const DriverEntry& d : driver_registry()) {
    if (d.name == name) return &d;
  }
  return nullptr;
}

Result<std::optional<std::string>> take_string(Options& options, std::string_view key) {
  auto it = options.find(std::string(key));
  if (it == options.end()) return std::optional<std::string>();
  std::string value;
  if (it->is_string()) {
    value = it->get<std::string>();
  } else if (it->is_number() || it->is_boolean()) {
    value = it->dump();
  } else {
    return fail(Error::with_message(
        EINVAL, "Invalid parameter type for '" + std::string(key) + "', expected: string"));
  }
  options.erase(it);
  return std::optional<std::string>(std::move(value));
}

Result<std::optional<uint64_t>> take_size(Options& options, std::string_view key) {
  auto it = options.find(std::string(key));
  if (it == options.end()) return std::optional<uint64_t>();
  uint64_t value = 0;
  if (it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0)) {
    value = it->get<uint64_t>();
  } else if (it->is_string()) {
    Result<uint64_t> v = parse_size(it->get<std::string>());
    if (!v) {
      return fail(Error::with_message(
          EINVAL, "Parameter '" + std::string(key) + "' expects a non-negative number below 2^64"));
    }
    value = *v;
  } else {
    return fail(Error::with_message(
        EINVAL, "Invalid parameter type for '" + std::string(key) + "', expected: size"));
  }
  options.erase(it);
  return std::optional<uint64_t>(value);
}

Result<std::optional<bool>> take_bool(Options& options, std::string_view key) {
  auto it = options.find(std::string(key));
  if (it == options.end()) return std::optional<bool>();
  bool value = false;
  if (it->is_boolean()) {
    value = it->get<bool>();
  } else if (it->is_string() && (*it == "on" || *it == "true" || *it == "yes")) {
    value = true;
  } else if (it->is_string() && (*it == "off" || *it == "false" || *it == "no")) {
    value = false;
  } else {
    return fail(
        Error::with_message(EINVAL, "Parameter '" + std::string(key) + "' expects 'on' or 'off'"));
  }
  options.erase(it);
  return std::optional<bool>(value);
}

namespace {

// Generic options every node accepts (qemu-compat.md §5.4).
Status apply_generic_options(Options& options, OpenFlags& flags, std::string& node_name) {
  auto name = take_string(options, "node-name");
  if (!name) return fail(name.error());
  if (*name) node_name = **name;
  auto ro = take_bool(options, "read-only");
  if (!ro) return fail(ro.error());
  if (*ro) flags.read_only = **ro;
  auto share = take_bool(options, "force-share");
  if (!share) return fail(share.error());
  if (*share) flags.force_share = **share;
  if (options.contains("cache") && options["cache"].is_object()) {
    Options& cache = options["cache"];
    auto direct = take_bool(cache, "direct");
    if (!direct) return fail(direct.error());
    if (*direct) flags.direct = **direct;
    auto no_flush = take_bool(cache, "no-flush");
    if (!no_flush) return fail(no_flush.error());
    if (*no_flush) flags.no_flush = **no_flush;
    if (cache.empty()) options.erase("cache");
  }
  auto discard = take_string(options, "discard");
  if (!discard) return fail(discard.error());
  if (*discard) {
    if (**discard == "ignore" || **discard == "off") {
      flags.discard = DiscardMode::kIgnore;
    } else if (**discard == "unmap" || **discard == "on") {
      flags.discard = DiscardMode::kUnmap;
    } else {
      return fail(Error::with_message(EINVAL, "Invalid discard option: " + **discard));
    }
  }
  auto detect = take_string(options, "detect-zeroes");
  if (!detect) return fail(detect.error());
  if (*detect && **detect != "off") {
    return fail(
        Error::with_message(ENOTSUP, "detect-zeroes=" + **detect + " is not supported yet"));
  }
  return ok();
}

}  // namespace

Task<Result<NodePtr>> open_node(EventLoop& loop, Options options, OpenFlags flags,
                                std::string_view default_driver) {
  // A string names an existing node (a backing child given by reference).
  if (options.is_string()) co_return open_node_reference(loop, options.get<std::string>());
  if (!options.is_object()) co_return fail(Error::invalid("options must be an object"));
  auto driver_name = take_string(options, "driver");
  if (!driver_name) co_return fail(driver_name.error());
  std::string name = *driver_name ? **driver_name : std::string(default_driver);
  if (name.empty())
    co_return fail(Error::with_message(EINVAL, "Must specify either driver or file"));
  const DriverEntry* entry = find_driver(name);
  if (!entry) co_return fail(Error::with_message(EINVAL, "Unknown driver '" + name + "'"));
  std::string node_name;
  if (Status s = apply_generic_options(options, flags, node_name); !s) co_return fail(s.error());
  OpenContext ctx{loop, flags};
  Result<NodePtr> node = co_await entry->open(ctx, options);
  if (!node) co_return node;
  if (!options.empty()) {
    std::string key = options.begin().key();
    if (options.begin()->is_object() && !options.begin()->empty()) {
      key += "." + options.begin()->begin().key();
    }
    (void)co_await (*node)->close();
    if (entry->has_protocol_name) {
      co_return fail(Error::with_message(
          EINVAL, "Block protocol '" + name + "' doesn't support the option '" + key + "'"));
    }
    co_return fail(Error::with_message(
        EINVAL, "Block format '" + name + "' does not support the option '" + key + "'"));
  }
  (*node)->set_node_name(node_name);
  (*node)->set_open_flags(ctx.flags);
  co_return node;
}

Task<Result<NodePtr>> open_child(OpenContext& ctx, Options& options, std::string_view key,
                                 std::string_view default_driver, bool required) {
  auto it = options.find(std::string(key));
  if (it == options.end()) {
    if (!required) co_return NodePtr();
    co_return fail(Error::with_message(
        EINVAL, "A block device must be specified for \"" + std::string(key) + "\""));
  }
  Options sub = *it;
  options.erase(it);
  if (sub.is_string()) {
    // qemu-compat.md §5.2: a string child is a reference to an existing node name.
    co_return open_node_reference(ctx.loop, sub.get<std::string>());
  }
  if (NodePtr preopened = take_preopened_child(sub, ctx.flags)) co_return preopened;
  co_return co_await open_node(ctx.loop, std::move(sub), ctx.flags, default_driver);
}

}  // namespace qblock
