// The storage daemon's graph commands: blockdev-add, blockdev-del, query-named-block-nodes,
// block_resize (QEMU 7.2's replies and messages; see qmp/storage_daemon.h).
#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "block/node_reference.h"
#include "jobs/backup.h"
#include "qblock/dirty_bitmaps.h"
#include "qblock/driver/driver.h"
#include "qmp/schema.h"
#include "qmp/storage_daemon.h"

namespace qblock {

namespace {

using qmp::CommandResult;
using qmp::qmp_fail;
using qmp::QmpError;

// blockdev-add's flat union: 'driver' picks the members. QMP's JSON input (`strict`) is
// type-checked against QEMU's schema (schema.h); the command line's dotted keys, all strings,
// only get the checks of the members QEMU requires before opening anything, for this node and
// its inline children.
std::optional<QmpError> check_blockdev(const Options& args, const std::string& prefix,
                                       bool strict) {
  if (strict) return qmp::check_blockdev_options(args, prefix);
  std::string driver;
  if (std::optional<QmpError> e = qmp::blockdev_driver(args, prefix, driver)) return e;
  const DriverEntry* entry = find_driver(driver);
  if (entry == nullptr) {
    return QmpError::generic("Parameter '" + prefix + "driver' does not accept value '" + driver +
                             "'");
  }
  if (entry->kind == NodeKind::kProtocol && (driver == "file" || driver == "host_device") &&
      !args.contains("filename")) {
    return QmpError::generic("Parameter '" + prefix + "filename' is missing");
  }
  // Drivers with other members than one `file` child (QAPI checks them in schema order).
  if (driver == "quorum" || driver == "blkverify") {
    const std::vector<std::string> members =
        driver == "quorum" ? std::vector<std::string>{"children", "vote-threshold"}
                           : std::vector<std::string>{"test", "raw"};
    for (const std::string& m : members) {
      if (!args.contains(m)) return QmpError::generic("Parameter '" + prefix + m + "' is missing");
    }
    if (driver == "blkverify") {
      for (const std::string& m : members) {
        if (!args[m].is_object()) continue;
        if (std::optional<QmpError> e = check_blockdev(args[m], prefix + m + ".", strict)) return e;
      }
    }
    return std::nullopt;
  }
  if (entry->kind != NodeKind::kProtocol) {
    const char* child = driver == "blkdebug" ? "image" : "file";
    auto it = args.find(child);
    if (it == args.end()) return QmpError::generic("Parameter '" + prefix + child + "' is missing");
    if (it->is_object()) return check_blockdev(*it, prefix + child + ".", strict);
  }
  return std::nullopt;
}

// The preallocate filter qcow2 inserts above its file by itself (prealloc=on) is implicit: QEMU
// has no such node, and like QEMU's implicit filters it is not listed.
bool is_implicit(const BlockNode& node) {
  return node.driver_name() == "preallocate" && node.node_name().empty();
}

// Names every unnamed node of the graph as QEMU does ("#block" + a number).
void name_anonymous_nodes(BlockNode& node, uint64_t& counter, const BlockNode* parent) {
  const bool implicit = is_implicit(node) && parent != nullptr && parent->driver_name() == "qcow2";
  if (referenced_node(node) != nullptr) return;  // named in its own graph
  if (node.node_name().empty() && !implicit) {
    node.set_node_name("#block" + std::to_string(counter++));
  }
  for (const Child& c : node.children()) name_anonymous_nodes(*c.node, counter, &node);
}

// The node called `name` in the graph under `node` (references are not followed: the node
// they name is found in its own graph), or nullptr.
BlockNode* find_in_graph(BlockNode& node, const std::string& name) {
  if (referenced_node(node) != nullptr) return nullptr;
  if (node.node_name() == name) return &node;
  for (const Child& c : node.children()) {
    if (BlockNode* found = find_in_graph(*c.node, name)) return found;
  }
  return nullptr;
}

// The protocol node at the bottom of the primary chain (its filename is the image's).
const BlockNode& bottom(const BlockNode& node) {
  const BlockNode* n = &node;
  while (n->primary_child() != nullptr) n = n->primary_child();
  return *n;
}

int64_t actual_size(const std::string& filename) {
  struct stat st;
  if (::stat(filename.c_str(), &st) != 0) return 0;
  return static_cast<int64_t>(st.st_blocks) * 512;
}

// NodeInfo's "Format specific information" lines ("refcount bits: 16") as QMP members
// ("refcount-bits": 16).
Options format_specific(const BlockNode& node) {
  Options data = Options::object();
  for (const auto& [key, value] : node.info().format_specific) {
    std::string name = key;
    for (char& c : name) {
      if (c == ' ') c = '-';
    }
    if (value == "true" || value == "false") {
      data[name] = value == "true";
    } else if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos) {
      data[name] = std::stoll(value);
    } else {
      data[name] = value;
    }
  }
  return data;
}

Options node_info(const BlockNode& node, int backing_depth) {
  const std::string filename = bottom(node).filename();
  Options image = Options::object();
  // QEMU reports lengths in whole sectors (bdrv_getlength), also for a protocol node.
  image["virtual-size"] = (node.length() + 511) / 512 * 512;
  image["filename"] = filename;
  const NodeInfo info = node.info();
  if (info.cluster_size != 0) image["cluster-size"] = info.cluster_size;
  image["format"] = node.driver_name();
  image["actual-size"] = actual_size(filename);
  if (!info.format_specific.empty()) {
    image["format-specific"] =
        Options{{"type", node.driver_name()}, {"data", format_specific(node)}};
  }
  image["dirty-flag"] = false;
  const OpenFlags& flags = node.open_flags();
  Options cache = Options::object();
  cache["no-flush"] = flags.no_flush;
  cache["direct"] = flags.direct;
  cache["writeback"] = true;
  Options n = Options::object();
  n["iops_rd"] = 0;
  n["detect_zeroes"] = "off";
  n["image"] = image;
  n["iops_wr"] = 0;
  n["ro"] = node.read_only();
  n["node-name"] = node.node_name();
  n["backing_file_depth"] = backing_depth;
  n["drv"] = node.driver_name();
  n["iops"] = 0;
  n["bps_wr"] = 0;
  n["write_threshold"] = 0;
  // The node's dirty bitmaps, newest first, as QEMU lists them (only when there are some).
  const std::vector<DirtyBitmapInfo> bitmaps = dirty_bitmaps(const_cast<BlockNode&>(node));
  if (!bitmaps.empty()) {
    Options list = Options::array();
    for (auto it = bitmaps.rbegin(); it != bitmaps.rend(); ++it) {
      Options b = Options::object();
      if (!it->name.empty()) b["name"] = it->name;
      b["recording"] = it->recording;
      b["persistent"] = it->persistent;
      b["busy"] = it->busy;
      b["granularity"] = it->granularity;
      b["count"] = it->count;
      if (it->inconsistent) b["inconsistent"] = true;
      list.push_back(std::move(b));
    }
    n["dirty-bitmaps"] = std::move(list);
  }
  n["encrypted"] = false;
  n["bps"] = 0;
  n["bps_rd"] = 0;
  n["cache"] = cache;
  n["file"] = filename;
  return n;
}

int backing_depth(const BlockNode& node) {
  int depth = 0;
  for (const BlockNode* n = node.child(ChildRole::kBacking); n != nullptr;
       n = n->child(ChildRole::kBacking)) {
    ++depth;
  }
  return depth;
}

// The parent of a reference to `target` in the graph under `node` and the reference's role
// (a backing reference first), or nullptr.
const Child* find_reference(const BlockNode& node, const BlockNode& target,
                            const BlockNode** parent) {
  const Child* found = nullptr;
  for (const Child& c : node.children()) {
    if (referenced_node(*c.node) == &target) {
      if (found == nullptr || c.role == ChildRole::kBacking) {
        found = &c;
        *parent = &node;
      }
      continue;
    }
    const BlockNode* p = nullptr;
    if (const Child* below = find_reference(*c.node, target, &p)) {
      if (found == nullptr || below->role == ChildRole::kBacking) {
        found = below;
        *parent = p;
      }
    }
  }
  return found;
}

void collect_nodes(const BlockNode& node, Options& out) {
  if (referenced_node(node) != nullptr) return;  // listed with its own graph
  if (!is_implicit(node)) out.push_back(node_info(node, backing_depth(node)));
  for (const Child& c : node.children()) collect_nodes(*c.node, out);
}

}  // namespace

BlockBackend* StorageDaemon::Impl::find_node(const std::string& name) {
  auto it = nodes_.find(name);
  return it == nodes_.end() ? nullptr : it->second.get();
}

BlockNode* StorageDaemon::Impl::find_any_node(const std::string& name) {
  for (auto& [root_name, backend] : nodes_) {
    if (BlockNode* n = find_in_graph(backend->root(), name)) return n;
  }
  return nullptr;
}

std::string StorageDaemon::Impl::node_reference_reason(const BlockNode& node) const {
  std::string reason;
  for (const auto& [root_name, backend] : nodes_) {
    const BlockNode* parent = nullptr;
    const Child* c = find_reference(backend->root(), node, &parent);
    if (c == nullptr) continue;
    if (c->role == ChildRole::kBacking) {
      // QEMU's op blocker comes before its reference count check.
      return "Node '" + node.node_name() + "' is busy: node is used as backing hd of '" +
             parent->node_name() + "'";
    }
    reason = "Block device " + node.node_name() + " is in use";
  }
  return reason;
}

Task<CommandResult> StorageDaemon::Impl::blockdev_add(Options args) {
  return add_graph(std::move(args), true);
}

Task<CommandResult> StorageDaemon::Impl::add_graph(Options args, bool strict) {
  if (std::optional<QmpError> e = check_blockdev(args, "", strict)) co_return qmp_fail(*e);
  auto name_it = args.find("node-name");
  if (name_it == args.end()) {
    co_return qmp_fail(QmpError::generic("'node-name' must be specified for the root node"));
  }
  const std::string name = name_it->get<std::string>();
  for (auto& [root_name, backend] : nodes_) {
    if (find_in_graph(backend->root(), name) != nullptr) {
      co_return qmp_fail(QmpError::generic("Duplicate nodes with node-name='" + name + "'"));
    }
  }
  BackendOptions options;
  options.tree = std::move(args);
  Task<Result<std::unique_ptr<BlockBackend>>> open = BlockBackend::open(loop_, std::move(options));
  Result<std::unique_ptr<BlockBackend>> opened = co_await std::move(open);
  if (!opened) co_return qmp_fail(QmpError::from(opened.error()));
  name_anonymous_nodes((*opened)->root(), next_auto_name_, nullptr);
  nodes_.emplace(name, std::move(*opened));
  node_seq_[name] = next_seq_++;
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::blockdev_del(Options args) {
  const std::string name = args["node-name"].get<std::string>();
  auto it = nodes_.find(name);
  if (it == nodes_.end()) {
    if (find_any_node(name) != nullptr) {
      co_return qmp_fail(QmpError::generic("Node " + name + " is not owned by the monitor"));
    }
    co_return qmp_fail(QmpError::generic("Failed to find node with node-name='" + name + "'"));
  }
  if (std::string busy = node_busy_reason(name); !busy.empty()) {
    co_return qmp_fail(QmpError::generic(busy));
  }
  for (const auto& [id, e] : exports_) {
    if (e->node_name == name) co_return qmp_fail(QmpError::generic("Node " + name + " is in use"));
  }
  if (std::string reason = node_reference_reason(it->second->root()); !reason.empty()) {
    co_return qmp_fail(QmpError::generic(reason));
  }
  std::unique_ptr<BlockBackend> backend = std::move(it->second);
  nodes_.erase(it);
  node_seq_.erase(name);
  Task<Status> close = backend->close();
  Status closed = co_await std::move(close);
  if (!closed) co_return qmp_fail(QmpError::from(closed.error()));
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::query_named_block_nodes(Options) {
  // The newest graph first, as QEMU lists its named nodes.
  std::vector<std::pair<uint64_t, const BlockBackend*>> roots;
  for (const auto& [name, backend] : nodes_) roots.emplace_back(node_seq_[name], backend.get());
  std::sort(roots.begin(), roots.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  Options list = Options::array();
  for (const auto& [seq, backend] : roots) {
    collect_nodes(const_cast<BlockBackend*>(backend)->root(), list);
  }
  // A running backup's copy bitmap is the newest (unnamed) bitmap of its source, as in QEMU.
  for (Job* j : jobs_.list()) {
    auto* backup = dynamic_cast<BackupJob*>(j);
    if (backup == nullptr || !backup->filter_in_path()) continue;
    for (Options& n : list) {
      if (n["node-name"] != backup->source().node_name()) continue;
      const DirtyBitmap& copy = backup->copy_bitmap();
      Options b = {{"recording", false},
                   {"persistent", false},
                   {"busy", false},
                   {"granularity", copy.granularity()},
                   {"count", copy.dirty_bytes()}};
      if (!n.contains("dirty-bitmaps")) n["dirty-bitmaps"] = Options::array();
      n["dirty-bitmaps"].insert(n["dirty-bitmaps"].begin(), std::move(b));
    }
  }
  co_return list;
}

Task<CommandResult> StorageDaemon::Impl::block_resize(Options args) {
  const std::string device = args.value("device", std::string());
  const std::string node_name = args.value("node-name", std::string());
  const int64_t size = args["size"].get<int64_t>();
  // qemu-storage-daemon has no named devices: only node names are found.
  BlockBackend* backend = device.empty() ? find_node(node_name) : nullptr;
  if (backend == nullptr) {
    co_return qmp_fail(
        QmpError::generic("Cannot find device='" + device + "' nor node-name='" + node_name + "'"));
  }
  // A job's nodes keep their size (qemu-storage-daemon 7.2's message, without a device name).
  if (!node_busy_reason(node_name).empty()) {
    co_return qmp_fail(QmpError::generic("Device '(null)' is in use"));
  }
  if (size < 0) co_return qmp_fail(QmpError::generic("Parameter 'size' expects a >0 size"));
  if (size % 512 != 0) {
    co_return qmp_fail(QmpError::generic("The new size must be a multiple of 512"));
  }
  Task<Status> truncate = backend->root().truncate(static_cast<uint64_t>(size));
  Status s = co_await std::move(truncate);
  if (!s) co_return qmp_fail(QmpError::from(s.error()));
  co_return Options::object();
}

}  // namespace qblock
