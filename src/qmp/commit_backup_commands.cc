// The storage daemon's block-commit and blockdev-backup (qemu-storage-daemon 7.2's arguments,
// checks in QEMU's order with its messages, and its events). An active commit (top = the
// device's root) is a MirrorJob of type "commit" into the base; an intermediate commit is a
// LiveCommitJob; a backup is a BackupJob. The base of a commit is reopened read-write in
// place first, as QEMU reopens it.
#include "jobs/backup.h"
#include "jobs/chain_edit.h"
#include "jobs/live_commit.h"
#include "jobs/mirror.h"
#include "qblock/dirty_bitmaps.h"
#include "qmp/storage_daemon.h"

namespace qblock {

namespace {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::qmp_fail;
using qmp::QmpError;
using qmp::required;

const std::vector<std::string> kOnError = {"report", "ignore", "enospc", "stop", "auto"};

// The node named `name` in the graph below `root`, or nullptr.
BlockNode* find_below(BlockNode& root, const std::string& name) {
  if (root.node_name() == name) return &root;
  for (const Child& c : root.children()) {
    if (BlockNode* n = find_below(*c.node, name)) return n;
  }
  return nullptr;
}

// True if `node` is `top` or in the backing chain below it.
bool chain_contains(BlockNode& top, const BlockNode* node) {
  for (BlockNode* n = &top; n != nullptr; n = n->child(ChildRole::kBacking)) {
    if (n == node) return true;
  }
  return false;
}

// The image in the chain below `top` whose file is `filename` (the deprecated 'top' and
// 'base' arguments), or nullptr.
BlockNode* find_by_filename(BlockNode& top, const std::string& filename) {
  for (BlockNode* n = &top; n != nullptr; n = n->child(ChildRole::kBacking)) {
    if (n->filename() == filename) return n;
  }
  return nullptr;
}

// The node whose backing child is `child` in the chain below `top`, or nullptr.
BlockNode* parent_in_chain(BlockNode& top, const BlockNode* child) {
  for (BlockNode* n = &top; n != nullptr; n = n->child(ChildRole::kBacking)) {
    if (n->child(ChildRole::kBacking) == child) return n;
  }
  return nullptr;
}

}  // namespace

void StorageDaemon::Impl::register_commit_backup_commands() {
  dispatcher_.add(
      {"block-commit",
       {optional("job-id", ArgType::kString), required("device", ArgType::kString),
        optional("base-node", ArgType::kString), optional("base", ArgType::kString),
        optional("top-node", ArgType::kString), optional("top", ArgType::kString),
        optional("backing-file", ArgType::kString), optional("speed", ArgType::kInt),
        qmp::enum_arg("on-error", kOnError, false), optional("filter-node-name", ArgType::kString),
        optional("auto-finalize", ArgType::kBool), optional("auto-dismiss", ArgType::kBool)},
       [this](Options args) { return block_commit(std::move(args)); }});
  dispatcher_.add(
      {"blockdev-backup",
       {optional("job-id", ArgType::kString), required("device", ArgType::kString),
        required("target", ArgType::kString),
        qmp::enum_arg("sync", {"top", "full", "none", "incremental", "bitmap"}),
        optional("speed", ArgType::kInt), optional("bitmap", ArgType::kString),
        qmp::enum_arg("bitmap-mode", {"on-success", "never", "always"}, false),
        optional("compress", ArgType::kBool), qmp::enum_arg("on-source-error", kOnError, false),
        qmp::enum_arg("on-target-error", kOnError, false),
        optional("auto-finalize", ArgType::kBool), optional("auto-dismiss", ArgType::kBool),
        optional("filter-node-name", ArgType::kString)},
       [this](Options args) { return blockdev_backup(std::move(args)); }});
}

bool StorageDaemon::Impl::is_non_root_node(const std::string& name) {
  for (auto& [root_name, backend] : nodes_) {
    for (const Child& c : backend->root().children()) {
      if (find_below(*c.node, name) != nullptr) return true;
    }
  }
  return false;
}

Task<CommandResult> StorageDaemon::Impl::block_commit(Options args) {
  const std::string device = args["device"].get<std::string>();
  BlockBackend* dev = find_node(device);
  if (dev == nullptr && !is_non_root_node(device)) {
    co_return qmp_fail(QmpError::device_not_found("Device '" + device + "' not found"));
  }
  // A node below a root, or a root a job's filter sits on.
  if (dev == nullptr || &user_node(*dev) != &dev->root()) {
    co_return qmp_fail(QmpError::generic("Need a root block node"));
  }
  BlockNode& root = dev->root();
  auto not_found = [](const std::string& n) {
    return QmpError::generic("Cannot find device='' nor node-name='" + n + "'");
  };
  auto not_in_chain = [](const std::string& n) {
    return QmpError::generic("'" + n + "' is not in this backing file chain");
  };
  if (args.contains("top-node") && args.contains("top")) {
    co_return qmp_fail(QmpError::generic("'top-node' and 'top' are mutually exclusive"));
  }
  BlockNode* top = &root;
  if (args.contains("top-node")) {
    const std::string name = args["top-node"].get<std::string>();
    top = nullptr;
    for (auto& [root_name, backend] : nodes_) {
      if ((top = find_below(backend->root(), name)) != nullptr) break;
    }
    if (top == nullptr) co_return qmp_fail(not_found(name));
    if (!chain_contains(root, top)) co_return qmp_fail(not_in_chain(name));
  } else if (args.contains("top")) {
    const std::string name = args["top"].get<std::string>();
    top = find_by_filename(root, name);
    if (top == nullptr)
      co_return qmp_fail(QmpError::generic("Top image file " + name + " not found"));
  }
  if (args.contains("base-node") && args.contains("base")) {
    co_return qmp_fail(QmpError::generic("'base-node' and 'base' are mutually exclusive"));
  }
  BlockNode* base = nullptr;
  if (args.contains("base-node")) {
    const std::string name = args["base-node"].get<std::string>();
    for (auto& [root_name, backend] : nodes_) {
      if ((base = find_below(backend->root(), name)) != nullptr) break;
    }
    if (base == nullptr) co_return qmp_fail(not_found(name));
    if (!chain_contains(*top, base)) co_return qmp_fail(not_in_chain(name));
  } else if (args.contains("base")) {
    const std::string name = args["base"].get<std::string>();
    base = find_by_filename(*top, name);
    if (base == nullptr) {
      co_return qmp_fail(QmpError::generic("Can't find '" + name + "' in the backing chain"));
    }
  } else {
    // The bottom of the chain.
    base = top;
    while (BlockNode* b = base->child(ChildRole::kBacking)) base = b;
  }
  if (top == base) co_return qmp_fail(QmpError::generic("cannot commit an image into itself"));
  const bool active = top == &root;
  if (active && args.contains("backing-file")) {
    co_return qmp_fail(
        QmpError::generic("'backing-file' specified, but '" + device + "' is the active layer"));
  }
  for (Job* j : jobs_.list()) {
    auto* c = dynamic_cast<LiveCommitJob*>(j);
    if (c != nullptr && chain_contains(root, &c->top())) {
      co_return qmp_fail(QmpError::generic(
          "Node '" + device + "' is busy: block device is in use by block job: " + "commit"));
    }
  }
  tl::expected<JobOptions, QmpError> job_options = block_job_options(args);
  if (!job_options) co_return qmp_fail(std::move(job_options.error()));
  JobOptions job = std::move(*job_options);
  const std::string id = job.id;
  const OnError on_error = on_error_policy(args, "on-error");

  // The base is written: reopen it read-write where it is in the chain.
  BlockNode* base_parent = parent_in_chain(*top, base);
  Task<Result<BlockNode*>> reopen = reopen_child_writable(*base_parent, ChildRole::kBacking);
  Result<BlockNode*> writable = co_await std::move(reopen);
  if (!writable) co_return qmp_fail(QmpError::generic(writable.error().message()));
  base = *writable;
  if (base->length() < top->length()) {
    // A shorter base grows to the top's length, as QEMU's commit does.
    Status grown = co_await base->truncate(top->length());
    if (!grown) co_return qmp_fail(QmpError::generic(grown.error().message()));
  }

  if (active) {
    MirrorOptions options;
    options.job = job;
    options.type = "commit";
    options.sync = MirrorSync::kTop;
    options.base = base;
    options.on_source_error = on_error;
    options.on_target_error = on_error;
    auto switch_users = users_switcher(root, device, *base, base->node_name());
    auto mirror = std::make_unique<MirrorJob>(loop_, std::move(options), *job_events_, root, *base,
                                              std::move(switch_users));
    jobs_.add(std::move(mirror)).start();
    co_return Options::object();
  }
  LiveCommitOptions options;
  options.job = job;
  options.on_error = on_error;
  options.backing_file = args.value("backing-file", std::string());
  BlockNode* above = parent_in_chain(root, top);
  auto commit =
      std::make_unique<LiveCommitJob>(loop_, std::move(options), *job_events_, *above, *top, *base);
  jobs_.add(std::move(commit)).start();
  co_return Options::object();
}

// blockdev-backup's bitmap arguments, checked in QEMU 7.2's order. sync=incremental becomes
// sync=bitmap with bitmap-mode=on-success (`sync` and `args` are rewritten so).
std::optional<QmpError> StorageDaemon::Impl::check_backup_bitmap(BlockNode& source, Options& args,
                                                                 std::string& sync) {
  const bool has_bitmap = args.contains("bitmap");
  const bool has_mode = args.contains("bitmap-mode");
  if ((sync == "incremental" || sync == "bitmap") && !has_bitmap) {
    return QmpError::generic("must provide a valid bitmap name for '" + sync + "' sync mode");
  }
  if (sync == "incremental") {
    if (has_mode && args["bitmap-mode"] != "on-success") {
      return QmpError::generic(
          "Bitmap sync mode must be 'on-success' when using sync mode 'incremental'");
    }
    sync = "bitmap";
    args["bitmap-mode"] = "on-success";
  }
  if (!has_bitmap) {
    if (has_mode) return QmpError::generic("Cannot specify bitmap sync mode without a bitmap");
    return std::nullopt;
  }
  const std::string name = args["bitmap"].get<std::string>();
  Status usable = check_dirty_bitmap(source, name, false);
  if (!usable && usable.error().errnum() == ENOENT) {
    return QmpError::generic("Bitmap '" + name + "' could not be found");
  }
  if (!args.contains("bitmap-mode")) {
    return QmpError::generic("Bitmap sync mode must be given when providing a bitmap");
  }
  if (!usable) return QmpError::from_without_hint(usable.error());
  if (sync == "none") {
    return QmpError::generic("sync mode 'none' does not produce meaningful bitmap outputs");
  }
  const std::string mode = args["bitmap-mode"].get<std::string>();
  if (mode == "never" && sync != "bitmap") {
    return QmpError::generic(
        "Bitmap sync mode 'never' has no meaningful effect when combined "
        "with sync mode '" +
        sync + "'");
  }
  return std::nullopt;
}

Task<CommandResult> StorageDaemon::Impl::blockdev_backup(Options args) {
  const std::string device = args["device"].get<std::string>();
  const std::string target_name = args["target"].get<std::string>();
  auto not_found = [](const std::string& n) {
    return QmpError::generic("Cannot find device='" + n + "' nor node-name='" + n + "'");
  };
  // QEMU's transaction drains every node, then the source while it sets the backup up: each
  // running (ready) job the drain reaches reports paused (standby) and back, even when the
  // command then fails. qblock's jobs do not stop for this; only the events are QEMU's.
  auto drain_events = [this](bool only_if_device_busy, const std::string& node) {
    if (only_if_device_busy && node_busy_reason(node).empty()) return;
    for (Job* j : jobs_.list()) {
      const JobStatus st = j->status();
      if (st != JobStatus::kRunning && st != JobStatus::kReady) continue;
      const bool ready = st == JobStatus::kReady;
      emit_event("JOB_STATUS_CHANGE",
                 Options{{"status", ready ? "standby" : "paused"}, {"id", j->id()}});
      emit_event("JOB_STATUS_CHANGE",
                 Options{{"status", ready ? "ready" : "running"}, {"id", j->id()}});
    }
  };
  drain_events(false, device);
  BlockBackend* src = find_node(device);
  if (src == nullptr) co_return qmp_fail(not_found(device));
  drain_events(true, device);
  BlockBackend* dst = find_node(target_name);
  if (dst == nullptr) co_return qmp_fail(not_found(target_name));
  if (src == dst) co_return qmp_fail(QmpError::generic("Source and target cannot be the same"));
  std::string sync = args["sync"].get<std::string>();
  BlockNode& source_root = src->root();
  if (std::optional<QmpError> e = check_backup_bitmap(source_root, args, sync)) {
    co_return qmp_fail(std::move(*e));
  }
  if (src->root().length() != dst->root().length()) {
    co_return qmp_fail(QmpError::generic("Source and target image have different sizes"));
  }
  tl::expected<JobOptions, QmpError> job = block_job_options(args);
  if (!job) co_return qmp_fail(std::move(job.error()));
  // After the job id and sizes, the target first, as qemu-storage-daemon 7.2.
  for (const std::string* name : {&target_name, &device}) {
    if (std::string busy = node_busy_reason(*name); !busy.empty()) {
      co_return qmp_fail(QmpError::generic(busy));
    }
  }
  const std::string id = job->id;
  BackupOptions options;
  options.job = std::move(*job);
  options.sync = sync == "full"     ? BackupSync::kFull
                 : sync == "top"    ? BackupSync::kTop
                 : sync == "bitmap" ? BackupSync::kBitmap
                                    : BackupSync::kNone;
  options.on_source_error = on_error_policy(args, "on-source-error");
  options.on_target_error = on_error_policy(args, "on-target-error");
  if (args.contains("bitmap")) {
    const std::string mode = args["bitmap-mode"].get<std::string>();
    options.bitmap_mode = mode == "never"    ? BitmapMode::kNever
                          : mode == "always" ? BitmapMode::kAlways
                                             : BitmapMode::kOnSuccess;
    options.bitmap = args["bitmap"].get<std::string>();
    Result<const DirtyBitmap*> frozen =
        freeze_dirty_bitmap(source_root, options.bitmap, options.bitmap_mode != BitmapMode::kNever);
    if (!frozen) co_return qmp_fail(QmpError::from_without_hint(frozen.error()));
    options.frozen = *frozen;
  }
  // `compress` is accepted and not honoured: the target gets the same data, uncompressed.
  auto switch_users = users_switcher(source_root, device, source_root, device);
  auto backup = std::make_unique<BackupJob>(loop_, std::move(options), *job_events_, source_root,
                                            dst->root(), std::move(switch_users));
  jobs_.add(std::move(backup)).start();
  // QEMU drains the source while it creates the job, which pauses the new job once.
  emit_event("JOB_STATUS_CHANGE", Options{{"status", "paused"}, {"id", id}});
  emit_event("JOB_STATUS_CHANGE", Options{{"status", "running"}, {"id", id}});
  co_return Options::object();
}

}  // namespace qblock
