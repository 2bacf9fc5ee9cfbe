// The storage daemon's job commands (block-commit and blockdev-backup are in
// commit_backup_commands.cc): blockdev-mirror, query-jobs, query-block-jobs,
// job-pause/resume/cancel/complete/finalize/dismiss, block-job-set-speed/cancel/complete/
// pause/resume/finalize/dismiss, and the job events (JOB_STATUS_CHANGE, BLOCK_JOB_READY,
// BLOCK_JOB_PENDING, BLOCK_JOB_COMPLETED, BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR) with
// qemu-storage-daemon 7.2's payloads, replies and messages.
#include <chrono>

#include "jobs/backup.h"
#include "jobs/live_commit.h"
#include "jobs/mirror.h"
#include "qmp/storage_daemon.h"

namespace qblock {

namespace {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::qmp_fail;
using qmp::QmpError;
using qmp::required;

// The block job fields of events: device (the job id), len, offset, speed, type.
Options block_job_info(const Job& job) {
  Options d = Options::object();
  d["device"] = job.id();
  d["len"] = job.total_progress();
  d["offset"] = job.current_progress();
  d["speed"] = job.speed();
  d["type"] = job.type();
  return d;
}

QmpError job_not_found() { return QmpError::generic("Job not found"); }
QmpError block_job_not_found(const std::string& id) {
  return {"DeviceNotActive", "Block job '" + id + "' not found"};
}

const std::vector<std::string> kOnError = {"report", "ignore", "enospc", "stop", "auto"};

}  // namespace

class StorageDaemon::Impl::JobEvents : public JobListener {
 public:
  explicit JobEvents(Impl& daemon) : daemon_(daemon) {}

  void job_status_changed(const Job& job) override {
    daemon_.emit_event("JOB_STATUS_CHANGE",
                       Options{{"status", job_status_name(job.status())}, {"id", job.id()}});
  }
  void job_ready(const Job& job) override {
    daemon_.emit_event("BLOCK_JOB_READY", block_job_info(job));
  }
  void job_pending(const Job& job) override {
    daemon_.emit_event("BLOCK_JOB_PENDING", Options{{"type", job.type()}, {"id", job.id()}});
  }
  void job_completed(const Job& job) override {
    Options d = block_job_info(job);
    if (!job.error().empty()) d["error"] = job.error();
    daemon_.emit_event("BLOCK_JOB_COMPLETED", d);
  }
  void job_cancelled(const Job& job) override {
    daemon_.emit_event("BLOCK_JOB_CANCELLED", block_job_info(job));
  }
  void job_io_error(const Job& job, bool is_read, const std::string& action) override {
    daemon_.emit_event("BLOCK_JOB_ERROR", Options{{"device", job.id()},
                                                  {"operation", is_read ? "read" : "write"},
                                                  {"action", action}});
  }
  void job_finished(Job& job) override { daemon_.jobs_.remove(job); }

 private:
  Impl& daemon_;
};

StorageDaemon::Impl::~Impl() = default;

std::string StorageDaemon::Impl::node_busy_reason(const std::string& name) const {
  BlockBackend* b = const_cast<Impl*>(this)->find_node(name);
  if (b == nullptr) return "";
  for (Job* j : jobs_.list()) {
    BlockNode* source = nullptr;
    BlockNode* target = nullptr;
    if (auto* m = dynamic_cast<MirrorJob*>(j)) {
      source = &m->source();
      target = &m->target();
    } else if (auto* k = dynamic_cast<BackupJob*>(j)) {
      source = &k->source();
      target = &k->target();
    } else if (auto* c = dynamic_cast<LiveCommitJob*>(j)) {
      for (BlockNode* n = &b->root(); n != nullptr; n = n->child(ChildRole::kBacking)) {
        if (n == &c->top()) source = &b->root();
      }
    }
    // A backup job blocks its target as it blocks its source (qemu-storage-daemon 7.2).
    const bool backup_target = target == &b->root() && dynamic_cast<BackupJob*>(j) != nullptr;
    if (source == &b->root() || backup_target) {
      return "Node '" + name + "' is busy: block device is in use by block job: " + j->type();
    }
    if (target == &b->root()) return "Node " + name + " is in use";
  }
  return "";
}

BlockNode& StorageDaemon::Impl::user_node(BlockBackend& backend) {
  for (Job* j : jobs_.list()) {
    auto* m = dynamic_cast<MirrorJob*>(j);
    if (m != nullptr && &m->source() == &backend.root() && m->filter_in_path()) {
      return m->filter();
    }
    auto* k = dynamic_cast<BackupJob*>(j);
    if (k != nullptr && &k->source() == &backend.root() && k->filter_in_path()) {
      return k->filter();
    }
  }
  return backend.root();
}

Task<void> StorageDaemon::Impl::end_all_jobs() {
  while (!jobs_.empty()) {
    for (Job* j : jobs_.list()) {
      if (j->status() == JobStatus::kConcluded) {
        (void)j->dismiss();
      } else if (job_verb_allowed(JobVerb::kCancel, j->status())) {
        (void)j->cancel(true);
      }
    }
    Task<void> pause = loop_.sleep_for(std::chrono::milliseconds(1));
    co_await std::move(pause);
  }
}

void StorageDaemon::Impl::register_job_commands() {
  job_events_ = std::make_unique<JobEvents>(*this);
  // The lambdas only bind a member coroutine; they are not coroutines themselves.
  auto bind = [this](Task<CommandResult> (Impl::*method)(Options)) {
    return [this, method](Options args) { return (this->*method)(std::move(args)); };
  };
  using Verb = std::function<Status(Job&, const Options&)>;
  auto verb = [this](Verb v, bool by_device, bool settle) {
    return [this, v, by_device, settle](Options args) {
      return job_verb(std::move(args), v, by_device, settle);
    };
  };
  const std::vector<qmp::ArgSpec> id_arg = {required("id", ArgType::kString)};
  const std::vector<qmp::ArgSpec> device_arg = {required("device", ArgType::kString)};
  const Verb pause = [](Job& j, const Options&) { return j.pause(); };
  const Verb resume = [](Job& j, const Options&) { return j.resume(); };
  const Verb complete = [](Job& j, const Options&) { return j.complete(); };
  const Verb finalize = [](Job& j, const Options&) { return j.finalize(); };
  const Verb dismiss = [](Job& j, const Options&) { return j.dismiss(); };

  dispatcher_.add({"job-pause", id_arg, verb(pause, false, false)});
  dispatcher_.add({"job-resume", id_arg, verb(resume, false, false)});
  // QEMU concludes an idle job (a backup with sync=none) and a backup sleeping in its speed
  // limit before it replies to job-cancel; a job that is copying, or a mirror sleeping, gets
  // the reply first.
  dispatcher_.add({"job-cancel", id_arg, [this](Options args) {
                     Job* j = jobs_.find(args.value("id", std::string()));
                     const bool idle =
                         j != nullptr &&
                         (!j->busy() || (j->throttling() && j->cancel_wakes_throttle()));
                     return job_verb(
                         std::move(args), [](Job& job, const Options&) { return job.cancel(true); },
                         false, idle);
                   }});
  dispatcher_.add({"job-complete", id_arg, verb(complete, false, false)});
  dispatcher_.add({"job-finalize", id_arg, verb(finalize, false, true)});
  dispatcher_.add({"job-dismiss", id_arg, verb(dismiss, false, true)});
  dispatcher_.add({"block-job-pause", device_arg, verb(pause, true, false)});
  dispatcher_.add({"block-job-resume", device_arg, verb(resume, true, false)});
  dispatcher_.add({"block-job-complete", device_arg, verb(complete, true, false)});
  dispatcher_.add({"block-job-cancel",
                   {required("device", ArgType::kString), optional("force", ArgType::kBool)},
                   verb([](Job& j, const Options& a) { return j.cancel(a.value("force", false)); },
                        true, false)});
  dispatcher_.add(
      {"block-job-set-speed",
       {required("device", ArgType::kString), required("speed", ArgType::kInt)},
       verb([](Job& j, const Options& a) { return j.set_speed(a["speed"].get<int64_t>()); }, true,
            false)});
  dispatcher_.add({"block-job-finalize", id_arg, verb(finalize, false, true)});
  dispatcher_.add({"block-job-dismiss", id_arg, verb(dismiss, false, true)});
  dispatcher_.add({"query-jobs", {}, bind(&Impl::query_jobs)});
  dispatcher_.add({"query-block-jobs", {}, bind(&Impl::query_block_jobs)});
  dispatcher_.add(
      {"blockdev-mirror",
       {optional("job-id", ArgType::kString), required("device", ArgType::kString),
        required("target", ArgType::kString), optional("replaces", ArgType::kString),
        qmp::enum_arg("sync", {"top", "full", "none", "incremental", "bitmap"}),
        optional("speed", ArgType::kInt), optional("granularity", ArgType::kUint32),
        optional("buf-size", ArgType::kInt), qmp::enum_arg("on-source-error", kOnError, false),
        qmp::enum_arg("on-target-error", kOnError, false),
        optional("filter-node-name", ArgType::kString),
        qmp::enum_arg("copy-mode", {"background", "write-blocking"}, false),
        optional("auto-finalize", ArgType::kBool), optional("auto-dismiss", ArgType::kBool)},
       bind(&Impl::blockdev_mirror)});
  register_commit_backup_commands();
}

Task<CommandResult> StorageDaemon::Impl::job_verb(Options args,
                                                  std::function<Status(Job&, const Options&)> verb,
                                                  bool by_device, bool settle) {
  const std::string id = args[by_device ? "device" : "id"].get<std::string>();
  Job* job = jobs_.find(id);
  if (job == nullptr) co_return qmp_fail(by_device ? block_job_not_found(id) : job_not_found());
  Status s = verb(*job, args);
  if (!s) co_return qmp_fail(QmpError::from(s.error()));
  if (settle) {
    // finalize and dismiss report their outcome before the reply, as QEMU does.
    const JobStatus before = job->status();
    // A job ending its speed-limit sleep takes up to one sleep step (milliseconds).
    for (int i = 0; i < 1000; ++i) {
      Job* still = jobs_.find(id);
      if (still == nullptr || still->status() != before) break;
      if (still->throttling()) {
        co_await loop_.sleep_for(std::chrono::milliseconds(1));
      } else {
        co_await loop_.yield();
      }
    }
  }
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::query_jobs(Options) {
  Options list = Options::array();
  for (Job* j : jobs_.list()) {
    Options x = Options::object();
    x["current-progress"] = j->current_progress();
    x["status"] = job_status_name(j->status());
    x["total-progress"] = j->total_progress();
    x["type"] = j->type();
    x["id"] = j->id();
    if (!j->error().empty()) x["error"] = j->error();
    list.push_back(x);
  }
  co_return list;
}

Task<CommandResult> StorageDaemon::Impl::query_block_jobs(Options) {
  Options list = Options::array();
  for (Job* j : jobs_.list()) {
    if (std::string_view(j->type()) == "create") continue;  // not a block job
    Options x = Options::object();
    x["auto-finalize"] = j->auto_finalize();
    x["io-status"] = j->io_status();
    x["device"] = j->id();
    x["auto-dismiss"] = j->auto_dismiss();
    x["busy"] = j->busy();
    x["len"] = j->total_progress();
    x["offset"] = j->current_progress();
    x["status"] = job_status_name(j->status());
    x["paused"] = j->paused();
    x["speed"] = j->speed();
    x["ready"] = j->ready();
    x["type"] = j->type();
    if (!j->error().empty()) x["error"] = j->error();
    list.push_back(x);
  }
  co_return list;
}

std::function<void(BlockNode&)> StorageDaemon::Impl::users_switcher(BlockNode& from,
                                                                    const std::string& from_name,
                                                                    BlockNode& to,
                                                                    const std::string& to_name) {
  auto current = std::make_shared<BlockNode*>(&from);
  BlockNode* source_root = &from;
  BlockNode* target_root = &to;
  return [this, current, source_root, target_root, from_name, to_name](BlockNode& node) {
    for (auto& [eid, e] : exports_) {
      if (&e->backend->root() != *current) continue;
      e->backend->set_root(node);
      if (&node == target_root) e->node_name = to_name;
      if (&node == source_root) e->node_name = from_name;
    }
    *current = &node;
  };
}

tl::expected<JobOptions, QmpError> StorageDaemon::Impl::block_job_options(const Options& args) {
  JobOptions job;
  job.id = args.value("job-id", std::string());
  if (Status s = jobs_.check_new_id(job.id); !s) return tl::unexpected(QmpError::from(s.error()));
  const int64_t speed = args.value("speed", int64_t{0});
  if (speed < 0) {
    // QEMU creates the job before it checks the speed.
    emit_event("JOB_STATUS_CHANGE", Options{{"status", "created"}, {"id", job.id}});
    emit_event("JOB_STATUS_CHANGE", Options{{"status", "null"}, {"id", job.id}});
    return tl::unexpected(QmpError::generic("Parameter 'speed' expects a non-negative value"));
  }
  job.speed = static_cast<uint64_t>(speed);
  job.auto_finalize = args.value("auto-finalize", true);
  job.auto_dismiss = args.value("auto-dismiss", true);
  return job;
}

OnError StorageDaemon::Impl::on_error_policy(const Options& args, const char* key) {
  std::string v = args.value(key, std::string("report"));
  if (v == "auto") v = "report";
  return parse_on_error(v).value_or(OnError::kReport);
}

Task<CommandResult> StorageDaemon::Impl::blockdev_mirror(Options args) {
  const std::string device = args["device"].get<std::string>();
  const std::string target_name = args["target"].get<std::string>();
  auto not_found = [](const std::string& n) {
    return QmpError::generic("Cannot find device='" + n + "' nor node-name='" + n + "'");
  };
  BlockBackend* src = find_node(device);
  if (src == nullptr) co_return qmp_fail(not_found(device));
  BlockBackend* dst = find_node(target_name);
  if (dst == nullptr) co_return qmp_fail(not_found(target_name));
  for (Job* j : jobs_.list()) {
    auto* m = dynamic_cast<MirrorJob*>(j);
    if (m != nullptr && (&m->source() == &src->root() || &m->target() == &src->root())) {
      co_return qmp_fail(QmpError::generic("Need a root block node"));
    }
  }
  if (std::string busy = node_busy_reason(target_name); !busy.empty()) {
    co_return qmp_fail(QmpError::generic(busy));
  }
  const std::string sync = args["sync"].get<std::string>();
  if (sync == "incremental" || sync == "bitmap") {
    co_return qmp_fail(QmpError::generic("Sync mode '" + sync + "' not supported"));
  }
  if (src == dst) co_return qmp_fail(QmpError::generic("Can't mirror node into itself"));
  const uint64_t granularity = args.value("granularity", uint64_t{0});
  if (args.contains("granularity")) {
    if (granularity < 512 || granularity > (64 << 20)) {
      co_return qmp_fail(
          QmpError::generic("Parameter 'granularity' expects a value in range [512B, 64MB]"));
    }
    if ((granularity & (granularity - 1)) != 0) {
      co_return qmp_fail(QmpError::generic("Parameter 'granularity' expects a power of 2"));
    }
  }
  const int64_t buf_size = args.value("buf-size", int64_t{0});
  if (args.contains("buf-size") && buf_size <= 0) {
    co_return qmp_fail(QmpError::generic("Parameter 'buf-size' expects a positive value"));
  }
  if (src->root().length() != dst->root().length()) {
    co_return qmp_fail(QmpError::generic("Source and target image have different sizes"));
  }
  tl::expected<JobOptions, QmpError> job_options = block_job_options(args);
  if (!job_options) co_return qmp_fail(std::move(job_options.error()));
  const std::string id = job_options->id;
  MirrorOptions options;
  options.job = std::move(*job_options);
  options.sync = sync == "full"  ? MirrorSync::kFull
                 : sync == "top" ? MirrorSync::kTop
                                 : MirrorSync::kNone;
  options.granularity = granularity;
  options.buf_size = static_cast<uint64_t>(buf_size);
  options.write_blocking = args.value("copy-mode", std::string()) == "write-blocking";
  options.on_source_error = on_error_policy(args, "on-source-error");
  options.on_target_error = on_error_policy(args, "on-target-error");

  // The users of the source: the exports now serving its node. The job switches them.
  BlockNode* source_root = &src->root();
  BlockNode* target_root = &dst->root();
  auto switch_users = users_switcher(*source_root, device, *target_root, target_name);
  auto job = std::make_unique<MirrorJob>(loop_, std::move(options), *job_events_, *source_root,
                                         *target_root, switch_users);
  jobs_.add(std::move(job)).start();
  co_return Options::object();
}

}  // namespace qblock
