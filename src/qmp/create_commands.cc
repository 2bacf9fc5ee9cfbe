// The storage daemon's blockdev-create: a "create" job (jobs/create_job.h) that makes a file
// (driver "file") or writes a qcow2 image into an existing node (driver "qcow2", "file" naming
// the node), with the image creation code `qblock create` uses (qemu-storage-daemon 7.2's
// arguments, messages and job events; see qmp/storage_daemon.h).
#include "block/formats/qcow2/create.h"
#include "jobs/create_job.h"
#include "qblock/image.h"
#include "qmp/schema.h"
#include "qmp/storage_daemon.h"

namespace qblock {

namespace {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::qmp_fail;
using qmp::QmpError;
using qmp::required;

// A create job reports only its status changes: it is no block job (no BLOCK_JOB_* events).
class CreateJobEvents : public JobListener {
 public:
  explicit CreateJobEvents(JobListener& daemon) : daemon_(daemon) {}
  void job_status_changed(const Job& job) override { daemon_.job_status_changed(job); }
  void job_ready(const Job&) override {}
  void job_pending(const Job&) override {}
  void job_completed(const Job&) override {}
  void job_cancelled(const Job&) override {}
  void job_io_error(const Job&, bool, const std::string&) override {}
  void job_finished(Job& job) override { daemon_.job_finished(job); }

 private:
  JobListener& daemon_;
};

const std::vector<std::string> kPrealloc = {"off", "metadata", "falloc", "full"};

Task<Status> create_file(EventLoop& loop, std::string filename, uint64_t size,
                         PreallocMode prealloc, FileCreateOptions file) {
  co_return co_await create_raw_image(loop, std::move(filename), size, prealloc, std::move(file));
}

// QEMU looks the node up when the job runs: a missing one fails the job, not the command.
Task<Status> create_qcow2(BlockNode* node, std::string name, qcow2::Qcow2CreateOptions opts) {
  if (node == nullptr) {
    co_return fail(Error::with_message(
        ENOENT, "Cannot find device='" + name + "' nor node-name='" + name + "'"));
  }
  co_return co_await qcow2::create_qcow2_on_node(*node, std::move(opts));
}

}  // namespace

void StorageDaemon::Impl::register_create_commands() {
  create_job_events_ = std::make_unique<CreateJobEvents>(*job_events_);
  dispatcher_.add({"blockdev-create",
                   {required("job-id", ArgType::kString), required("options", ArgType::kAnyObject)},
                   [this](Options args) { return blockdev_create(std::move(args)); }});
}

Task<CommandResult> StorageDaemon::Impl::blockdev_create(Options args) {
  const std::string id = args["job-id"].get<std::string>();
  const Options& o = args["options"];
  std::function<Task<Status>()> work;
  // The work fails before any I/O: QEMU's job then runs to its end before the reply, so the
  // aborting and concluded events come first.
  bool fails_at_once = false;
  // The union's discriminator is named without the "options." prefix, its members with it.
  if (std::optional<QmpError> e = qmp::check_arguments(
          o, {qmp::enum_arg("driver", qmp::qemu_blockdev_drivers())}, "", true)) {
    co_return qmp_fail(*e);
  }
  const std::string driver = o["driver"].get<std::string>();
  if (driver == "file") {
    if (std::optional<QmpError> e = qmp::check_arguments(
            o,
            {required("driver", ArgType::kString), required("filename", ArgType::kString),
             required("size", ArgType::kUint), qmp::enum_arg("preallocation", kPrealloc, false),
             optional("nocow", ArgType::kBool), optional("extent-size-hint", ArgType::kUint)},
            "options.")) {
      co_return qmp_fail(*e);
    }
    PreallocMode prealloc = parse_prealloc_mode(o.value("preallocation", std::string("off")))
                                .value_or(PreallocMode::kOff);
    FileCreateOptions file;
    file.nocow = o.value("nocow", false);
    if (o.contains("extent-size-hint"))
      file.extent_size_hint = o["extent-size-hint"].get<uint64_t>();
    fails_at_once = prealloc == PreallocMode::kMetadata || !validate_file_create_options(file);
    work = [loop = &loop_, filename = o["filename"].get<std::string>(),
            size = o["size"].get<uint64_t>(), prealloc,
            file] { return create_file(*loop, filename, size, prealloc, file); };
  } else if (driver == "qcow2") {
    if (std::optional<QmpError> e = qmp::check_arguments(
            o,
            {required("driver", ArgType::kString), required("file", ArgType::kString),
             optional("data-file", ArgType::kString), optional("data-file-raw", ArgType::kBool),
             optional("extended-l2", ArgType::kBool), required("size", ArgType::kUint),
             qmp::enum_arg("version", {"v2", "v3"}, false),
             optional("backing-file", ArgType::kString), optional("backing-fmt", ArgType::kString),
             optional("encrypt", ArgType::kAnyObject), optional("cluster-size", ArgType::kUint),
             qmp::enum_arg("preallocation", kPrealloc, false),
             optional("lazy-refcounts", ArgType::kBool), optional("refcount-bits", ArgType::kInt),
             qmp::enum_arg("compression-type", {"zlib", "zstd"}, false)},
            "options.")) {
      co_return qmp_fail(*e);
    }
    for (const char* unsupported : {"data-file", "data-file-raw", "encrypt"}) {
      if (o.contains(unsupported)) {
        co_return qmp_fail(QmpError::generic(std::string("qblock does not support '") +
                                             unsupported + "' in blockdev-create"));
      }
    }
    qcow2::Qcow2CreateOptions c;
    c.size = o["size"].get<uint64_t>();
    c.version = o.value("version", std::string("v3")) == "v2" ? 2 : 3;
    c.cluster_size = o.value("cluster-size", uint64_t{65536});
    c.lazy_refcounts = o.value("lazy-refcounts", false);
    c.refcount_bits = static_cast<uint64_t>(o.value("refcount-bits", int64_t{16}));
    c.backing_file = o.value("backing-file", std::string());
    c.backing_fmt = o.value("backing-fmt", std::string());
    c.unsafe_backing = true;  // the size is given; the backing file is only named
    c.extended_l2 = o.value("extended-l2", false);
    c.compression_type = o.value("compression-type", std::string("zlib")) == "zstd" ? 1 : 0;
    c.preallocation = parse_prealloc_mode(o.value("preallocation", std::string("off")))
                          .value_or(PreallocMode::kOff);
    const std::string file = o["file"].get<std::string>();
    BlockNode* node = find_any_node(file);
    fails_at_once = node == nullptr || !qcow2::validate_create_options(c);
    work = [node, file, c] { return create_qcow2(node, file, c); };
  } else if (driver == "raw" || driver.starts_with("null") || driver.starts_with("blk") ||
             driver == "throttle" || driver == "preallocate" || driver == "copy-on-read" ||
             driver == "compress" || driver == "quorum" || driver == "replication") {
    // Drivers without image creation: members are checked first (an empty branch).
    if (std::optional<QmpError> e =
            qmp::check_arguments(o, {required("driver", ArgType::kString)}, "options.")) {
      co_return qmp_fail(*e);
    }
    co_return qmp_fail(QmpError::generic("Driver does not support blockdev-create"));
  } else {
    co_return qmp_fail(
        QmpError::generic("qblock's blockdev-create does not support driver '" + driver + "'"));
  }
  if (Status s = jobs_.check_new_id(id); !s) co_return qmp_fail(QmpError::from(s.error()));
  JobOptions options;
  options.id = id;
  options.auto_dismiss = false;  // blockdev-create's job waits for job-dismiss
  auto job =
      std::make_unique<CreateJob>(loop_, std::move(options), *create_job_events_, std::move(work));
  jobs_.add(std::move(job)).start();
  for (int i = 0; fails_at_once && i < 1000; ++i) {
    Job* j = jobs_.find(id);
    if (j == nullptr || j->status() == JobStatus::kConcluded) break;
    co_await loop_.yield();
  }
  co_return Options::object();
}

}  // namespace qblock
