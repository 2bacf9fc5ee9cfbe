// The storage daemon's NBD commands: nbd-server-start/stop, block-export-add/del,
// query-block-exports, and BLOCK_EXPORT_DELETED (QEMU 7.2's replies; see qmp/storage_daemon.h).
// One nbd::Server serves every export on the daemon's socket; clients choose by name.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "qblock/dirty_bitmaps.h"
#include "qblock/listen_socket.h"
#include "qblock/user_objects.h"
#include "qmp/storage_daemon.h"

namespace qblock {

namespace {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::optional;
using qmp::qmp_fail;
using qmp::QmpError;
using qmp::required;

const std::vector<std::string> kAddressTypes = {"inet", "unix", "vsock", "fd"};

std::vector<qmp::ArgSpec> address_members(const std::string& type) {
  if (type == "unix") {
    return {required("path", ArgType::kString), optional("abstract", ArgType::kBool),
            optional("tight", ArgType::kBool)};
  }
  if (type == "inet") {
    return {required("host", ArgType::kString),    required("port", ArgType::kString),
            optional("numeric", ArgType::kBool),   optional("to", ArgType::kUint),
            optional("ipv4", ArgType::kBool),      optional("ipv6", ArgType::kBool),
            optional("keep-alive", ArgType::kBool)};
  }
  return {};
}

// A string member of a command-line value: dotted keys give every value as text.
std::string text_of(const Options& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

Result<int> bind_listener(const NbdAddress& a) {
  return a.unix_socket ? listen_unix(a.path) : listen_tcp(a.host, a.port);
}

}  // namespace

Status StorageDaemon::Impl::open_nbd_listener() {
  if (nbd_listen_fd_ >= 0) return ok();
  Result<int> fd = bind_listener(nbd_address_);
  if (!fd) return fail(fd.error());
  nbd_listen_fd_ = *fd;
  return ok();
}

Task<CommandResult> StorageDaemon::Impl::qmp_nbd_server_start(Options args) {
  co_return nbd_server_start(args, true);
}

CommandResult StorageDaemon::Impl::nbd_server_start(const Options& args, bool legacy) {
  // QMP: addr is a SocketAddressLegacy {"type", "data": {...}}; the command line's
  // --nbd-server takes the flat SocketAddress {"type", "path" | "host", "port"}.
  if (legacy) {
    if (std::optional<QmpError> e = qmp::check_arguments(
            args, {required("addr", ArgType::kObject,
                            {qmp::enum_arg("type", kAddressTypes),
                             required("data", ArgType::kAnyObject)}),
                   optional("tls-creds", ArgType::kString), optional("tls-authz", ArgType::kString),
                   optional("max-connections", ArgType::kUint32)})) {
      return qmp_fail(*e);
    }
    const std::string type = args["addr"]["type"].get<std::string>();
    if (std::optional<QmpError> e =
            qmp::check_arguments(args["addr"]["data"], address_members(type), "addr.data.")) {
      return qmp_fail(*e);
    }
  } else {
    auto addr = args.find("addr");
    if (addr == args.end() || !addr->is_object() || !addr->contains("type")) {
      return qmp_fail(QmpError::generic("Parameter 'addr.type' is missing"));
    }
  }
  if (nbd_running_) return qmp_fail(QmpError::generic("NBD server already running"));
  // TLS: credentials from an --object, loaded now so that a bad file fails the command.
  std::unique_ptr<nbd::TlsCredentials> tls;
  if (args.contains("tls-creds")) {
    Result<const TlsCredsObject*> creds =
        user_objects().tls_creds(text_of(args["tls-creds"]), TlsEndpoint::kServer);
    if (!creds) return qmp_fail(QmpError::generic(creds.error().message()));
    const TlsCredsObject& c = **creds;
    Result<std::unique_ptr<nbd::TlsCredentials>> loaded =
        c.type == TlsCredsType::kPsk
            ? nbd::TlsCredentials::load_psk(c.psk_file())
            : nbd::TlsCredentials::load_x509(c.dir, c.verify_peer
                                                        ? nbd::TlsCredentials::VerifyPeer::kYes
                                                        : nbd::TlsCredentials::VerifyPeer::kNo);
    if (!loaded) return qmp_fail(QmpError::generic(loaded.error().message()));
    tls = std::move(*loaded);
  }
  const Options& addr = args["addr"];
  const Options& data = legacy ? addr["data"] : addr;
  const std::string type = text_of(addr["type"]);
  NbdAddress address;
  if (type == "unix") {
    if (!data.contains("path"))
      return qmp_fail(QmpError::generic("Parameter 'addr.path' is missing"));
    address.path = text_of(data["path"]);
  } else if (type == "inet") {
    if (!data.contains("host"))
      return qmp_fail(QmpError::generic("Parameter 'addr.host' is missing"));
    if (!data.contains("port"))
      return qmp_fail(QmpError::generic("Parameter 'addr.port' is missing"));
    address.unix_socket = false;
    address.host = text_of(data["host"]);
    address.port = text_of(data["port"]);
  } else {
    return qmp_fail(QmpError::generic("Parameter 'type' does not accept value '" + type + "'"));
  }
  uint32_t max_connections = 0;
  if (args.contains("max-connections")) {
    const std::string text = text_of(args["max-connections"]);
    char* end = nullptr;
    const unsigned long long n = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0' || n > UINT32_MAX) {
      return qmp_fail(QmpError::generic("Parameter 'max-connections' expects uint32_t"));
    }
    max_connections = static_cast<uint32_t>(n);
  }
  nbd_address_ = address;
  nbd_max_connections_ = max_connections;
  nbd_tls_ = std::move(tls);
  // Looked up when a client has finished its TLS handshake, as QEMU does.
  nbd_tls_authz_ = args.contains("tls-authz") ? text_of(args["tls-authz"]) : std::string();
  if (Status s = open_nbd_listener(); !s) return qmp_fail(QmpError::from(s.error()));
  nbd_running_ = true;
  return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::nbd_server_stop(Options) {
  if (!nbd_running_) co_return qmp_fail(QmpError::generic("NBD server not running"));
  Task<void> gone = delete_all_exports();
  co_await std::move(gone);
  if (nbd_listen_fd_ >= 0) ::close(nbd_listen_fd_);
  nbd_listen_fd_ = -1;
  if (nbd_address_.unix_socket) ::unlink(nbd_address_.path.c_str());
  nbd_running_ = false;
  nbd_tls_.reset();  // every export using it is gone
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::qmp_block_export_add(Options args) {
  co_return block_export_add(args, false);
}

CommandResult StorageDaemon::Impl::block_export_add(const Options& args, bool from_cmdline) {
  const std::vector<qmp::ArgSpec> spec = {
      qmp::enum_arg("type", {"nbd", "vhost-user-blk", "fuse", "vduse-blk"}),
      required("id", ArgType::kString),
      optional("fixed-iothread", ArgType::kBool),
      optional("iothread", ArgType::kString),
      required("node-name", ArgType::kString),
      optional("writable", ArgType::kBool),
      optional("writethrough", ArgType::kBool),
      optional("name", ArgType::kString),
      optional("description", ArgType::kString),
      optional("bitmaps", ArgType::kStringList),
      optional("allocation-depth", ArgType::kBool),
  };
  // Command-line values are text ("writable=on"); turn the booleans into JSON first.
  Options checked = args;
  for (const char* key : {"writable", "writethrough", "allocation-depth", "fixed-iothread"}) {
    auto it = checked.find(key);
    if (it != checked.end() && it->is_string() && from_cmdline) {
      if (*it == "on" || *it == "true") {
        *it = true;
      } else if (*it == "off" || *it == "false") {
        *it = false;
      }
    }
  }
  if (std::optional<QmpError> e = qmp::check_arguments(checked, spec)) return qmp_fail(*e);
  const std::string type = checked["type"].get<std::string>();
  if (type != "nbd") {
    return qmp_fail(QmpError::generic("Export type '" + type + "' is not supported by qblock"));
  }
  const std::string id = checked["id"].get<std::string>();
  if (exports_.contains(id)) {
    return qmp_fail(QmpError::generic("Block export id '" + id + "' is already in use"));
  }
  const std::string node_name = checked["node-name"].get<std::string>();
  BlockBackend* backend = find_node(node_name);
  if (backend == nullptr) {
    return qmp_fail(QmpError::generic("Cannot find device='' nor node-name='" + node_name + "'"));
  }
  // qblock runs every export on its one event loop; the iothread must exist all the same.
  if (auto it = checked.find("iothread"); it != checked.end()) {
    const std::string iothread = it->get<std::string>();
    if (!user_objects().is_iothread(iothread)) {
      return qmp_fail(QmpError::generic("iothread \"" + iothread + "\" not found"));
    }
  }
  if (!nbd_running_) return qmp_fail(QmpError::generic("NBD server not running"));
  const std::string name = checked.value("name", node_name);
  for (const auto& [other_id, other] : exports_) {
    if (other->name == name) {
      return qmp_fail(QmpError::generic("NBD server already has export named '" + name + "'"));
    }
  }
  // bitmaps: each a dirty bitmap of the node, offered as qemu:dirty-bitmap:NAME.
  std::vector<std::string> bitmaps;
  if (checked.contains("bitmaps")) {
    const std::vector<DirtyBitmapInfo> known = dirty_bitmaps(backend->root());
    for (const Options& b : checked["bitmaps"]) {
      const std::string bitmap = b.get<std::string>();
      auto it = std::find_if(known.begin(), known.end(),
                             [&bitmap](const DirtyBitmapInfo& k) { return k.name == bitmap; });
      if (it == known.end()) {
        return qmp_fail(QmpError::generic("Bitmap '" + bitmap + "' is not found"));
      }
      // A read-only export must not see a bitmap that the node's writers still change.
      if (it->recording && !checked.value("writable", false) && !backend->root().read_only()) {
        return qmp_fail(
            QmpError::generic("Enabled bitmap '" + bitmap + "' incompatible with readonly export"));
      }
      bitmaps.push_back(bitmap);
    }
  }
  if (Status s = open_nbd_listener(); !s) return qmp_fail(QmpError::from(s.error()));
  if (nbd_server_ == nullptr) {
    nbd_server_ = std::make_unique<nbd::Server>(loop_, nbd_tls_.get());
    if (!nbd_tls_authz_.empty()) {
      nbd_server_->set_tls_authz(nbd_tls_authz_, [](const std::string& message) {
        std::fprintf(stderr, "qemu-storage-daemon: %s\n", message.c_str());
      });
    }
    nbd_server_done_ = false;
    spawn(run_nbd_server(nbd_server_.get(), nbd_listen_fd_));
  }
  nbd::ExportOptions options;
  options.name = name;
  options.description = checked.value("description", std::string());
  options.read_only = !checked.value("writable", false);
  options.bitmaps = std::move(bitmaps);
  auto e = std::make_unique<BlockExport>();
  e->id = id;
  e->node_name = node_name;
  e->name = name;
  // The export's own view of the node: a job can switch it (mirror's filter, the pivot).
  e->seq = next_seq_++;
  e->backend = BlockBackend::attach(user_node(*backend));
  if (Status s = nbd_server_->add_export(*e->backend, std::move(options)); !s) {
    return qmp_fail(QmpError::from(s.error()));
  }
  exports_.emplace(id, std::move(e));
  return Options::object();
}

Task<void> StorageDaemon::Impl::run_nbd_server(nbd::Server* server, int listen_fd) {
  Task<Status> listen = server->listen(listen_fd, nbd_max_connections_, true);
  Status s = co_await std::move(listen);
  (void)s;  // accept errors end the server; nbd-server-stop or quit reports the exports gone
  nbd_server_done_ = true;
  changed_.wake_all();
}

Task<void> StorageDaemon::Impl::delete_export(std::string id) {
  auto it = exports_.find(id);
  if (it == exports_.end()) co_return;
  const std::string name = it->second->name;
  // The export's clients are disconnected; the other exports keep serving theirs.
  Task<void> removed = nbd_server_->remove_export(name);
  co_await std::move(removed);
  exports_.erase(id);
  emit_event("BLOCK_EXPORT_DELETED", Options{{"id", id}});
}

Task<void> StorageDaemon::Impl::delete_all_exports() {
  std::vector<std::string> ids;
  for (const auto& [id, e] : exports_) ids.push_back(id);
  for (const std::string& id : ids) {
    Task<void> del = delete_export(id);
    co_await std::move(del);
  }
  if (nbd_server_ != nullptr) {
    nbd_server_->stop();
    while (!nbd_server_done_) co_await changed_.wait();
    nbd_server_.reset();
    // stop() shut the listening socket down; the next export binds a fresh one.
    if (nbd_listen_fd_ >= 0) ::close(nbd_listen_fd_);
    nbd_listen_fd_ = -1;
  }
}

Task<CommandResult> StorageDaemon::Impl::block_export_del(Options args) {
  const std::string id = args["id"].get<std::string>();
  auto it = exports_.find(id);
  if (it == exports_.end())
    co_return qmp_fail(QmpError::generic("Export '" + id + "' is not found"));
  const bool hard = args.value("mode", std::string("safe")) == "hard";
  if (!hard && nbd_server_->connection_count(it->second->name) > 0) {
    co_return qmp_fail(QmpError::generic("export '" + id + "' still in use"));
  }
  Task<void> del = delete_export(id);
  co_await std::move(del);
  co_return Options::object();
}

Task<CommandResult> StorageDaemon::Impl::nbd_server_add(Options args) {
  // The legacy form of block-export-add: the export's id is its name.
  const std::string device = args["device"].get<std::string>();
  const std::string name = args.value("name", device);
  Options e = Options::object();
  e["type"] = "nbd";
  e["id"] = name;
  e["node-name"] = device;
  e["name"] = name;
  for (const char* key : {"description", "writable"}) {
    if (args.contains(key)) e[key] = args[key];
  }
  if (args.contains("bitmap")) {
    e["bitmaps"] = Options::array();
    e["bitmaps"].push_back(args["bitmap"]);
  }
  co_return block_export_add(e, false);
}

Task<CommandResult> StorageDaemon::Impl::query_block_exports(Options) {
  // The newest export first, as QEMU lists them.
  std::vector<const BlockExport*> sorted;
  for (const auto& [id, e] : exports_) sorted.push_back(e.get());
  std::sort(sorted.begin(), sorted.end(),
            [](const BlockExport* a, const BlockExport* b) { return a->seq > b->seq; });
  Options list = Options::array();
  for (const BlockExport* e : sorted) {
    const std::string& id = e->id;
    Options x = Options::object();
    x["node-name"] = e->node_name;
    x["shutting-down"] = false;
    x["type"] = "nbd";
    x["id"] = id;
    list.push_back(x);
  }
  co_return list;
}

}  // namespace qblock
