// The NBD server (public API): serves BlockBackends as exports (one, or several chosen by
// name) to any number of connections, all on the backend's event loop (fixed newstyle negotiation,
// structured replies, meta contexts base:allocation and qemu:allocation-depth, STARTTLS with x509
// or PSK credentials). See docs/architecture.md, "NBD server", for the request pipeline and the
// limits that protect the server from its clients.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "qblock/block_backend.h"
#include "qblock/error.h"
#include "qblock/task.h"

namespace qblock::nbd {

class Stream;  // src/nbd/stream.h: a byte pipe (socket, TLS session, test pipe)

// Server credentials, loaded once at startup and shared by every connection. Immutable once
// loaded, so any number of sessions may use them. Instances come only from the factories.
class TlsCredentials {
 public:
  // x509: `dir` holds server-cert.pem (the server's certificate, optionally followed by
  // intermediates) and server-key.pem (its unencrypted PEM key), and optionally ca-cert.pem
  // -- the layout of QEMU's tls-creds-x509 object. CA certificates from ca-cert.pem that
  // issue the last certificate of server-cert.pem are appended to the chain sent to clients,
  // up to but excluding the self-signed root; ca-cert.pem is also loaded as the trust list.
  // With VerifyPeer::kYes (QEMU's verify-peer=on, its default) clients must present a
  // certificate that ca-cert.pem's CAs issued, else the handshake fails; with kNo client
  // certificates are not requested. Sessions negotiate GnuTLS's "NORMAL" priorities.
  // Errors name the file: ENOENT etc. "Could not read TLS certificate '<dir>/server-cert.pem'"
  // when a file cannot be read; EINVAL "Could not load ..." when it does not parse, and
  // "Could not use TLS certificate '...' with private key '...'" when they do not match.
  enum class VerifyPeer { kNo, kYes };
  static Result<std::unique_ptr<TlsCredentials>> load_x509(const std::string& dir,
                                                           VerifyPeer verify = VerifyPeer::kNo);
  // PSK: `file` has one "identity:hexkey" line per client (the format of QEMU's
  // tls-creds-psk keys.psk, of libnbd's tls-psk-file and of GnuTLS's psktool); blank lines
  // are skipped. Sessions negotiate "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK", as libnbd's clients
  // do. Errors: the read error naming the file; EINVAL naming the file and line for a
  // malformed line, a repeated identity or a file without keys.
  static Result<std::unique_ptr<TlsCredentials>> load_psk(const std::string& file);
  virtual ~TlsCredentials() = default;

 protected:
  TlsCredentials() = default;
};

enum class DetectZeroes { kOff, kOn, kUnmap };

// What is exported and how.
struct ExportOptions {
  std::string name;         // -x; clients asking for another name are refused
  std::string description;  // -D; sent with NBD_INFO_DESCRIPTION when set
  // Write requests get EPERM; the export advertises READ_ONLY. A read-only backend always
  // gives a read-only export.
  bool read_only = false;
  // Advertise NBD_FLAG_CAN_MULTI_CONN: every connection shares the backend, so a flush on
  // one makes the writes of all connections stable. The tool sets it when more than one
  // client may connect.
  bool multi_conn = false;
  // Writes of all-zero payloads become write-zeroes (kUnmap also lets them unmap).
  DetectZeroes detect_zeroes = DetectZeroes::kOff;
  // Honour trim and the unmap hint of write-zeroes (qemu-nbd --discard=unmap).
  bool discard_unmap = false;
  // Dirty bitmaps of the exported node offered as meta contexts qemu:dirty-bitmap:NAME
  // (qemu-nbd -B NAME; qblock/dirty_bitmaps.h): extents flagged 1 are dirty.
  std::vector<std::string> bitmaps;
};

struct ServerLimits {
  // Requests one connection may have in flight; the server stops reading from a client at
  // this number (flow control, nothing is refused) until one finishes.
  uint32_t max_requests_in_flight = 256;
  // Write payload and read reply bytes one connection may hold in memory at once (a single
  // request is always admitted when the connection has nothing else in flight).
  uint64_t max_bytes_in_flight = 128ull << 20;
  // A client still negotiating (handshake, options, TLS) after this long is disconnected
  // (qemu-nbd's --handshake-limit). Zero: no limit. Enforced by listen() only.
  std::chrono::seconds handshake_limit{10};
};

class Server {
 public:
  // `backend` must outlive the server. With `tls` set, clients must STARTTLS before anything
  // but NBD_OPT_ABORT (qemu-nbd's --tls-creds behaviour); `tls` must outlive the server.
  Server(BlockBackend& backend, ExportOptions export_options, const TlsCredentials* tls = nullptr,
         ServerLimits limits = {});
  // A server with no export yet (qemu-storage-daemon's NBD server): add_export() adds them,
  // and clients choose one by name. Until then every name is "not present".
  explicit Server(EventLoop& loop, const TlsCredentials* tls = nullptr, ServerLimits limits = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Serves one connected client until it disconnects, violates the protocol or the server
  // stops. Never fails: errors end the connection. Safe against any input. Stream is the
  // library's internal byte pipe (in-tree tests and the fuzz target); embedders use listen().
  Task<void> serve(std::unique_ptr<Stream> stream);

  // Accepts clients on `listen_fd` and serves each concurrently, at most `max_clients` at a
  // time (more wait in the kernel's backlog, as with qemu-nbd -e; 0: no limit). Without
  // `persistent` it returns after the last client of at least one has left (qemu-nbd without -t).
  // Returns early, after every connection ended, when stop() is called.
  Task<Status> listen(int listen_fd, uint32_t max_clients, bool persistent);

  // Stops accepting, ends every connection (requests in flight complete first) and makes
  // listen() return. Idempotent; callable from any coroutine on the loop.
  void stop();

  // TLS client authorization (qemu-nbd --tls-authz=ID): after each TLS handshake the
  // client's x509 certificate must satisfy the authorization object `authz_id` of
  // user_objects() (looked up then, as QEMU does); a client refused is disconnected and
  // `report` gets QEMU's message ("option negotiation failed: TLS x509 authz check for DN is
  // denied", or "...: Cannot find QAuthZ object ID ID"). Call before serving.
  void set_tls_authz(std::string authz_id, std::function<void(const std::string&)> report);

  // Connections being served now.
  std::size_t connection_count() const;
  // Connections that chose export `name` (NBD_OPT_GO or EXPORT_NAME).
  std::size_t connection_count(const std::string& name) const;

  // Serves one more export on the same connections' socket: a client naming it in
  // NBD_OPT_INFO/GO, EXPORT_NAME or the meta context options gets it; NBD_OPT_LIST lists every
  // export in the order they were added. `backend` must outlive the export.
  // Errors: EEXIST when an export already has this name.
  Status add_export(BlockBackend& backend, ExportOptions options);
  // Withdraws export `name` (no-op if there is none): new clients no longer find it; the
  // connections that chose it are ended (their requests in flight complete first) before
  // this returns. Other exports are not disturbed. The backend may go once it returns.
  Task<void> remove_export(std::string name);

 private:
  class Connection;
  struct Export;
  struct State;
  // Disconnects clients past the handshake limit; runs while listen() does.
  Task<void> reap_stalled_handshakes();
  std::unique_ptr<State> state_;
};

}  // namespace qblock::nbd
