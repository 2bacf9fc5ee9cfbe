// block-dirty-bitmap-add, -remove, -clear, -enable, -disable and -merge, with
// qemu-storage-daemon 7.2's errors, over qblock/dirty_bitmaps.h.
#include <string>
#include <vector>

#include "qblock/dirty_bitmaps.h"
#include "qmp/storage_daemon.h"

namespace qblock {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::QmpError;
using qmp::required;

namespace {

Task<Status> remove_bitmap(BlockNode* node, std::string name) {
  co_return co_await remove_dirty_bitmap(*node, std::move(name));
}

}  // namespace

void StorageDaemon::Impl::register_bitmap_commands() {
  const std::vector<qmp::ArgSpec> node_name = {required("node", ArgType::kString),
                                               required("name", ArgType::kString)};
  dispatcher_.add({"block-dirty-bitmap-add",
                   {required("node", ArgType::kString), required("name", ArgType::kString),
                    optional("granularity", ArgType::kUint32),
                    optional("persistent", ArgType::kBool), optional("disabled", ArgType::kBool)},
                   [this](Options args) { return bitmap_add(std::move(args)); }});
  for (const char* verb : {"remove", "clear", "enable", "disable"}) {
    const std::string command = std::string("block-dirty-bitmap-") + verb;
    dispatcher_.add({command, node_name, [this, command](Options args) {
                       return bitmap_verb(command, std::move(args));
                     }});
  }
  dispatcher_.add({"block-dirty-bitmap-merge",
                   {},
                   [this](Options args) { return bitmap_merge(std::move(args)); },
                   true});
}

Task<CommandResult> StorageDaemon::Impl::bitmap_add(Options args) {
  const std::string node = args["node"].get<std::string>();
  BlockNode* n = find_any_node(node);
  if (n == nullptr) {
    co_return qmp_fail(
        QmpError::generic("Cannot find device='" + node + "' nor node-name='" + node + "'"));
  }
  std::optional<uint64_t> granularity;
  if (args.contains("granularity")) granularity = args["granularity"].get<uint64_t>();
  const BitmapPersistence persistence = args.value("persistent", false)
                                            ? BitmapPersistence::kPersistent
                                            : BitmapPersistence::kTransient;
  const BitmapRecording recording =
      args.value("disabled", false) ? BitmapRecording::kDisabled : BitmapRecording::kEnabled;
  Status s =
      add_dirty_bitmap(*n, args["name"].get<std::string>(), granularity, persistence, recording);
  if (!s) co_return qmp_fail(QmpError::from_without_hint(s.error()));
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::bitmap_verb(std::string command, Options args) {
  const std::string node = args["node"].get<std::string>();
  const std::string name = args["name"].get<std::string>();
  BlockNode* n = find_any_node(node);
  if (n == nullptr) co_return qmp_fail(QmpError::generic("Node '" + node + "' not found"));
  Status s = ok();
  if (command == "block-dirty-bitmap-remove") {
    Task<Status> remove = remove_bitmap(n, name);
    s = co_await std::move(remove);
  } else if (command == "block-dirty-bitmap-clear") {
    s = clear_dirty_bitmap(*n, name);
  } else if (command == "block-dirty-bitmap-enable") {
    s = enable_dirty_bitmap(*n, name);
  } else {
    s = disable_dirty_bitmap(*n, name);
  }
  if (!s) co_return qmp_fail(QmpError::from_without_hint(s.error()));
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::bitmap_merge(Options args) {
  const std::vector<qmp::ArgSpec> spec = {required("node", ArgType::kString),
                                          required("target", ArgType::kString)};
  if (std::optional<QmpError> e = qmp::check_arguments(args, spec, "", true)) {
    co_return qmp_fail(*e);
  }
  if (!args.contains("bitmaps")) {
    co_return qmp_fail(QmpError::generic("Parameter 'bitmaps' is missing"));
  }
  if (!args["bitmaps"].is_array()) {
    co_return qmp_fail(QmpError::generic("Invalid parameter type for 'bitmaps', expected: array"));
  }
  const std::string node = args["node"].get<std::string>();
  const std::string target = args["target"].get<std::string>();
  BlockNode* n = find_any_node(node);
  if (n == nullptr) co_return qmp_fail(QmpError::generic("Node '" + node + "' not found"));
  // Each source: a bitmap name on `node`, or {"node": N, "name": B}. QEMU checks the target
  // first (merge_dirty_bitmap looks it up before the source), then merges one by one.
  for (const Options& b : args["bitmaps"]) {
    BlockNode* source_node = n;
    std::string source;
    if (b.is_string()) {
      source = b.get<std::string>();
    } else if (b.is_object() && b.contains("node") && b.contains("name") && b["node"].is_string() &&
               b["name"].is_string()) {
      const std::string sn = b["node"].get<std::string>();
      source_node = find_any_node(sn);
      if (source_node == nullptr) {
        co_return qmp_fail(QmpError::generic("Node '" + sn + "' not found"));
      }
      source = b["name"].get<std::string>();
    } else {
      co_return qmp_fail(QmpError::generic(
          "Invalid parameter type for 'bitmaps[0]', expected: BlockDirtyBitmapOrStr"));
    }
    Status s = merge_dirty_bitmap(*n, target, *source_node, source);
    if (!s) co_return qmp_fail(QmpError::from_without_hint(s.error()));
  }
  co_return Options::object();
}

}  // namespace qblock
