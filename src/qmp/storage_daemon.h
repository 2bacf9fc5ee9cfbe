// StorageDaemon::Impl: the daemon's state (named graphs, the NBD server and its exports, the
// monitors) and the QMP command table over it. The public face is qblock/storage_daemon.h;
// the commands are split by subject: block_commands.cc (graphs), export_commands.cc (NBD),
// job_commands.cc (jobs: blockdev-mirror, job-*, block-job-*, query-jobs), create_commands.cc
// (blockdev-create),
// storage_daemon.cc (lifecycle, query-version, query-commands, quit).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "block/filters/quorum.h"
#include "block/node_reference.h"
#include "jobs/job_registry.h"
#include "nbd/server.h"
#include "qblock/block_backend.h"
#include "qblock/nbd_server.h"
#include "qblock/storage_daemon.h"
#include "qblock/sync.h"
#include "qmp/dispatcher.h"
#include "qmp/monitor.h"

namespace qblock {

// Where the NBD server listens.
struct NbdAddress {
  bool unix_socket = true;
  std::string path;  // unix
  std::string host;  // inet
  std::string port;  // inet
};

struct BlockExport {
  std::string id;
  std::string node_name;
  std::string name;  // the NBD export name
  uint64_t seq = 0;  // creation order (query-block-exports lists the newest first)
  // Attached to the node (BlockBackend::attach); the daemon's NBD server serves it under
  // `name` until the export is deleted.
  std::unique_ptr<BlockBackend> backend;
};

class StorageDaemon::Impl {
 public:
  explicit Impl(EventLoop& loop);
  ~Impl();

  EventLoop& loop() { return loop_; }
  qmp::Dispatcher& dispatcher() { return dispatcher_; }

  // ---- lifecycle (storage_daemon.cc) ----
  Status add_monitor(const std::string& path);
  Task<Status> run();
  void quit();
  void emit_event(const std::string& name, Options data);

  // ---- graphs (block_commands.cc) ----
  Task<qmp::CommandResult> blockdev_add(Options args);
  // blockdev-add's work; `strict`: QMP's JSON types (the command line gives text).
  Task<qmp::CommandResult> add_graph(Options args, bool strict);
  Task<qmp::CommandResult> blockdev_del(Options args);
  Task<qmp::CommandResult> query_named_block_nodes(Options args);
  Task<qmp::CommandResult> block_resize(Options args);
  // The graph whose root has `name`, or nullptr.
  BlockBackend* find_node(const std::string& name);
  // The node called `name` in any graph (roots and their named or numbered children), or
  // nullptr. A child given by name in blockdev-add ("file": "proto") resolves through it.
  BlockNode* find_any_node(const std::string& name);
  // Why blockdev-del must refuse `node` because another graph uses it by reference (QEMU's
  // message: a backing child is busy, any other child's node is in use), or empty.
  std::string node_reference_reason(const BlockNode& node) const;

  // ---- NBD (export_commands.cc) ----
  // `legacy`: QMP's SocketAddressLegacy ({"type", "data": {...}}); else the flat form.
  qmp::CommandResult nbd_server_start(const Options& args, bool legacy);
  Task<qmp::CommandResult> nbd_server_stop(Options args);
  qmp::CommandResult block_export_add(const Options& args, bool from_cmdline);
  Task<qmp::CommandResult> block_export_del(Options args);
  Task<qmp::CommandResult> query_block_exports(Options args);
  // Ends every export (NBD server stop, daemon shutdown), emitting BLOCK_EXPORT_DELETED.
  Task<void> delete_all_exports();

  // ---- jobs (job_commands.cc) ----
  void register_job_commands();
  // Why blockdev-del must refuse `name` (a job's source or target), or empty.
  std::string node_busy_reason(const std::string& name) const;
  // The node a new user of `backend`'s root must use: a running mirror's filter above it,
  // or the root itself.
  BlockNode& user_node(BlockBackend& backend);
  // Cancels every job and waits until all are gone (daemon shutdown).
  Task<void> end_all_jobs();
  // A job verb: job-* name the job "id" (GenericError "Job not found"), block-job-* name it
  // "device" (`by_device`; DeviceNotActive). `settle`: the reply waits until the verb's
  // status change has been reported (finalize, dismiss).
  Task<qmp::CommandResult> job_verb(Options args, std::function<Status(Job&, const Options&)> verb,
                                    bool by_device, bool settle);
  Task<qmp::CommandResult> query_jobs(Options args);
  Task<qmp::CommandResult> query_block_jobs(Options args);
  Task<qmp::CommandResult> blockdev_mirror(Options args);
  // The options every block job command takes (job-id, speed, auto-finalize, auto-dismiss),
  // checked as QEMU checks them: a taken id fails; a negative speed fails after the
  // JOB_STATUS_CHANGE events of a job created and dropped, as QEMU emits them.
  tl::expected<JobOptions, qmp::QmpError> block_job_options(const Options& args);
  // An on-*-error argument ("auto" is "report" for these jobs); absent: report.
  static OnError on_error_policy(const Options& args, const char* key);
  // A job's switch_users callback: moves the exports now on `from` (named `from_name`) onto
  // the node given, renaming them `to_name` when it is `to`, `from_name` when it is `from`.
  std::function<void(BlockNode&)> users_switcher(BlockNode& from, const std::string& from_name,
                                                 BlockNode& to, const std::string& to_name);

  // ---- block-commit, blockdev-backup (commit_backup_commands.cc) ----
  void register_commit_backup_commands();
  // True if `name` names a node below some graph's root.
  bool is_non_root_node(const std::string& name);
  Task<qmp::CommandResult> block_commit(Options args);
  Task<qmp::CommandResult> blockdev_backup(Options args);
  // blockdev-backup's bitmap and bitmap-mode against `sync` (QEMU's messages and order);
  // turns sync=incremental into sync=bitmap with bitmap-mode=on-success.
  std::optional<qmp::QmpError> check_backup_bitmap(BlockNode& source, Options& args,
                                                   std::string& sync);

  // ---- block-dirty-bitmap-* (bitmap_commands.cc) ----
  void register_bitmap_commands();
  Task<qmp::CommandResult> bitmap_add(Options args);
  // remove, clear, enable, disable: `command` is the full command name.
  Task<qmp::CommandResult> bitmap_verb(std::string command, Options args);
  Task<qmp::CommandResult> bitmap_merge(Options args);

  // ---- object-add, object-del (object_commands.cc) ----
  void register_object_commands();

  // ---- blockdev-create (create_commands.cc) ----
  void register_create_commands();
  Task<qmp::CommandResult> blockdev_create(Options args);

 private:
  void register_commands();
  Task<qmp::CommandResult> query_version(Options args);
  Task<qmp::CommandResult> query_commands(Options args);
  Task<qmp::CommandResult> quit_command(Options args);
  Task<qmp::CommandResult> qmp_nbd_server_start(Options args);
  Task<qmp::CommandResult> qmp_block_export_add(Options args);
  Task<qmp::CommandResult> nbd_server_add(Options args);
  // Accepts NBD clients for every export until nbd_server_ stops.
  Task<void> run_nbd_server(nbd::Server* server, int listen_fd);
  Task<void> delete_export(std::string id);
  Status open_nbd_listener();
  // Runs the monitors' run() tasks to their end, then sets monitors_done_.
  Task<void> join_monitors(std::vector<Task<void>> runs);

  EventLoop& loop_;
  qmp::Dispatcher dispatcher_;
  std::vector<std::unique_ptr<qmp::MonitorServer>> monitors_;
  std::map<std::string, std::unique_ptr<BlockBackend>> nodes_;
  // Creation order of the graphs and exports: QEMU lists the newest first.
  std::map<std::string, uint64_t> node_seq_;
  uint64_t next_seq_ = 0;
  uint64_t next_auto_name_ = 0;
  bool nbd_running_ = false;
  NbdAddress nbd_address_;
  uint32_t nbd_max_connections_ = 0;
  int nbd_listen_fd_ = -1;
  // nbd-server-start's tls-creds, loaded; the exports' servers use it. Null: no TLS.
  std::unique_ptr<nbd::TlsCredentials> nbd_tls_;
  std::map<std::string, std::unique_ptr<BlockExport>> exports_;
  // One server for every export (started with the first, stopped with the last export's
  // server); nbd_server_done_: its listen() returned.
  std::unique_ptr<nbd::Server> nbd_server_;
  std::string nbd_tls_authz_;  // nbd-server-start's tls-authz
  bool nbd_server_done_ = false;
  class JobEvents;  // the JobListener that turns job reports into QMP events
  std::unique_ptr<JobListener> job_events_;
  // job_events_ without the BLOCK_JOB_* events (blockdev-create's jobs are no block jobs).
  std::unique_ptr<JobListener> create_job_events_;
  JobRegistry jobs_;
  WaitQueue changed_;  // an export finished, or quit was requested
  bool quitting_ = false;
  bool monitors_done_ = false;  // every monitor's run() has returned
  // blockdev-add's children given by node name resolve to the daemon's nodes.
  ScopedNodeResolver node_resolver_{[this](const std::string& n) { return find_any_node(n); }};
  // The quorum driver's QUORUM_REPORT_BAD / QUORUM_FAILURE become QMP events.
  ScopedQuorumEventSink quorum_events_{
      [this](const std::string& name, Options data) { emit_event(name, std::move(data)); }};
};

}  // namespace qblock
