// The storage daemon's lifecycle and its general QMP commands (query-version, query-commands,
// quit), and the public StorageDaemon facade; see qmp/storage_daemon.h.
#include "qmp/storage_daemon.h"

#include "qblock/driver/uring.h"
#include "qblock/version.h"
#include "qmp/json_stream.h"

namespace qblock {

namespace {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::required;

// The QEMU release whose QMP behaviour qblock reproduces; clients test it for features.
Options version_object() {
  Options qemu = Options::object();
  qemu["micro"] = 0;
  qemu["minor"] = 2;
  qemu["major"] = 7;
  Options v = Options::object();
  v["qemu"] = qemu;
  v["package"] = std::string("qblock ") + QBLOCK_VERSION_STRING;
  return v;
}

}  // namespace

StorageDaemon::Impl::Impl(EventLoop& loop) : loop_(loop), changed_(loop) {
  register_commands();
  register_job_commands();
  register_create_commands();
  register_bitmap_commands();
  register_object_commands();
}

void StorageDaemon::Impl::register_commands() {
  // The lambdas only bind a member coroutine; they are not coroutines themselves.
  auto bind = [this](Task<CommandResult> (Impl::*method)(Options)) {
    return [this, method](Options args) { return (this->*method)(std::move(args)); };
  };
  const std::vector<qmp::ArgSpec> no_args;
  dispatcher_.add({"query-version", no_args, bind(&Impl::query_version)});
  dispatcher_.add({"query-commands", no_args, bind(&Impl::query_commands)});
  dispatcher_.add({"quit", no_args, bind(&Impl::quit_command)});
  dispatcher_.add({"blockdev-add", {}, bind(&Impl::blockdev_add), true});
  dispatcher_.add(
      {"blockdev-del", {required("node-name", ArgType::kString)}, bind(&Impl::blockdev_del)});
  dispatcher_.add({"query-named-block-nodes",
                   {optional("flat", ArgType::kBool)},
                   bind(&Impl::query_named_block_nodes)});
  dispatcher_.add({"block_resize",
                   {optional("device", ArgType::kString), optional("node-name", ArgType::kString),
                    required("size", ArgType::kInt)},
                   bind(&Impl::block_resize)});
  dispatcher_.add({"nbd-server-start", {}, bind(&Impl::qmp_nbd_server_start), true});
  dispatcher_.add({"nbd-server-stop", no_args, bind(&Impl::nbd_server_stop)});
  dispatcher_.add({"block-export-add", {}, bind(&Impl::qmp_block_export_add), true});
  dispatcher_.add(
      {"block-export-del",
       {required("id", ArgType::kString), qmp::enum_arg("mode", {"safe", "hard"}, false)},
       bind(&Impl::block_export_del)});
  dispatcher_.add({"query-block-exports", no_args, bind(&Impl::query_block_exports)});
  dispatcher_.add({"nbd-server-add",
                   {required("device", ArgType::kString), optional("name", ArgType::kString),
                    optional("description", ArgType::kString), optional("writable", ArgType::kBool),
                    optional("bitmap", ArgType::kString)},
                   bind(&Impl::nbd_server_add)});
}

Task<CommandResult> StorageDaemon::Impl::query_version(Options) { co_return version_object(); }

Task<CommandResult> StorageDaemon::Impl::query_commands(Options) {
  Options list = Options::array();
  for (const std::string& name : dispatcher_.command_names()) {
    list.push_back(Options{{"name", name}});
  }
  co_return list;
}

Task<CommandResult> StorageDaemon::Impl::quit_command(Options) {
  // qemu-storage-daemon closes its exports before the reply goes out: their
  // BLOCK_EXPORT_DELETED events come first. (Before quit(): run() then finds none left.)
  Task<void> exports_gone = delete_all_exports();
  co_await std::move(exports_gone);
  quit();
  co_return Options::object();
}

Status StorageDaemon::Impl::add_monitor(const std::string& path) {
  auto monitor = std::make_unique<qmp::MonitorServer>(loop_, dispatcher_, version_object(),
                                                      qmp::kDefaultMaxMessageBytes);
  if (Status s = monitor->listen_unix(path); !s) return s;
  monitors_.push_back(std::move(monitor));
  return ok();
}

void StorageDaemon::Impl::emit_event(const std::string& name, Options data) {
  for (auto& m : monitors_) m->emit_event(name, data);
}

void StorageDaemon::Impl::quit() {
  if (quitting_) return;
  quitting_ = true;
  changed_.wake_all();
}

Task<Status> StorageDaemon::Impl::run() {
  std::vector<Task<void>> monitor_runs;
  for (auto& m : monitors_) monitor_runs.push_back(m->run());
  spawn(join_monitors(std::move(monitor_runs)));
  while (!quitting_) co_await changed_.wait();
  // The reply to "quit" is queued before the monitors stop taking input.
  for (auto& m : monitors_) m->stop();
  Task<void> exports_gone = delete_all_exports();
  co_await std::move(exports_gone);
  // Then the jobs, as qemu-storage-daemon does: cancelled, their filters removed.
  Task<void> jobs_gone = end_all_jobs();
  co_await std::move(jobs_gone);
  if (nbd_listen_fd_ >= 0) ::close(nbd_listen_fd_);
  nbd_listen_fd_ = -1;
  if (nbd_running_ && nbd_address_.unix_socket) ::unlink(nbd_address_.path.c_str());
  nbd_running_ = false;
  Status result;
  for (auto& [name, backend] : nodes_) {
    Task<Status> close = backend->close();
    Status s = co_await std::move(close);
    if (!s && result) result = s;
  }
  nodes_.clear();
  // The monitors' connections send what is queued and end; a client that stops reading
  // does not keep the daemon alive past the bound.
  for (int i = 0; i < 500 && !monitors_done_; ++i) {
    co_await uring::sleep(loop_, std::chrono::milliseconds(10));
  }
  co_return result;
}

Task<void> StorageDaemon::Impl::join_monitors(std::vector<Task<void>> runs) {
  co_await when_all(std::move(runs));
  monitors_done_ = true;
}

// ---- the public facade ----

StorageDaemon::StorageDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
StorageDaemon::~StorageDaemon() = default;

std::unique_ptr<StorageDaemon> StorageDaemon::create(EventLoop& loop) {
  return std::unique_ptr<StorageDaemon>(new StorageDaemon(std::make_unique<Impl>(loop)));
}

Task<Status> StorageDaemon::add_blockdev(Options options, OptionSyntax syntax) {
  Task<CommandResult> add = impl_->add_graph(std::move(options), syntax == OptionSyntax::kJson);
  CommandResult r = co_await std::move(add);
  if (!r) co_return fail(Error::with_message(EINVAL, r.error().desc));
  co_return ok();
}

Status StorageDaemon::start_nbd_server(Options options) {
  CommandResult r = impl_->nbd_server_start(options, false);
  if (!r) return fail(Error::with_message(EINVAL, r.error().desc));
  return ok();
}

Status StorageDaemon::add_export(Options options) {
  CommandResult r = impl_->block_export_add(options, true);
  if (!r) return fail(Error::with_message(EINVAL, r.error().desc));
  return ok();
}

Status StorageDaemon::add_monitor(const std::string& socket_path) {
  return impl_->add_monitor(socket_path);
}

Task<Status> StorageDaemon::run() { return impl_->run(); }

void StorageDaemon::quit() { impl_->quit(); }

}  // namespace qblock
