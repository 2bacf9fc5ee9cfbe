// TLS for the NBD server: GnuTLS server credentials (an x509 directory or a PSK keys file)
// and TlsStream, a Stream running a GnuTLS server session over a non-blocking socket. GnuTLS
// does the socket I/O itself; when it would block, the coroutine waits for readiness with an
// io_uring poll on the connection's event loop, so a slow peer holds up only its connection.
#include "nbd/tls.h"

#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "qblock/driver/uring.h"
#include "qblock/user_objects.h"

namespace qblock::nbd {

namespace {

// "NORMAL" is GnuTLS's default set (TLS 1.2 and 1.3); it leaves the PSK key exchanges off.
// The PSK string is the one libnbd's PSK clients (nbdinfo, nbdcopy) offer.
constexpr char kX509Priority[] = "NORMAL";
constexpr char kPskPriority[] = "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK";

// The largest plaintext of one TLS record (RFC 8446 §5.1, RFC 5246 §6.2.1: 2^14 bytes).
constexpr std::size_t kMaxRecord = 16384;

// Credential files are small; anything bigger is the wrong file (or /dev/zero).
constexpr std::size_t kMaxCredentialFile = 16 << 20;

// Wipes secret bytes (keys, key files) before their memory is freed. Best effort: it keeps
// keys out of freed heap blocks, not out of every copy the standard library might make.
void wipe(void* p, std::size_t n) {
  if (n > 0) gnutls_memset(p, 0, n);
}

// Reads all of `path`. Errors name the file: "Could not read <what> '<path>': <strerror>".
Result<std::string> read_file(const std::string& path, std::string_view what) {
  std::string context = "Could not read " + std::string(what) + " '" + path + "'";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(Error::from_errno(errno, std::move(context)));
  std::string data;
  // Sized up front (plus one byte to see EOF) so that no reallocation leaves an unwiped copy
  // of a key behind.
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0) {
    data.reserve(std::min(static_cast<std::size_t>(st.st_size), kMaxCredentialFile) + 1);
  }
  int error = 0;
  for (;;) {
    if (data.size() > kMaxCredentialFile) {
      error = EFBIG;
      break;
    }
    std::size_t old_size = data.size();
    std::size_t room = data.capacity() - old_size;
    std::size_t chunk = room > 0 ? room : 4096;
    data.resize(old_size + chunk);
    ssize_t n = ::read(fd, data.data() + old_size, chunk);
    data.resize(old_size + static_cast<std::size_t>(n > 0 ? n : 0));
    if (n == 0) break;
    if (n < 0 && errno != EINTR) {
      error = errno;
      break;
    }
  }
  ::close(fd);
  if (error) {
    wipe(data.data(), data.size());
    return fail(Error::from_errno(error, std::move(context)));
  }
  return data;
}

// A file's contents that are wiped when dropped (private keys, PSK files).
class SecretText {
 public:
  explicit SecretText(std::string text) : text_(std::move(text)) {}
  ~SecretText() { wipe(text_.data(), text_.size()); }
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

gnutls_datum_t datum_of(const std::string& s) {
  return gnutls_datum_t{reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
                        static_cast<unsigned>(s.size())};
}

// "Could not load <what> '<path>': <GnuTLS message>", with EINVAL.
Error load_error(std::string_view what, const std::string& path, int code) {
  return Error::with_message(
      EINVAL, "Could not load " + std::string(what) + " '" + path + "': " + gnutls_strerror(code));
}

// The certificates of one PEM file, in file order. Owns them.
class CertList {
 public:
  CertList() = default;
  ~CertList() {
    for (gnutls_x509_crt_t c : certs_) gnutls_x509_crt_deinit(c);
  }
  CertList(CertList&& o) noexcept : certs_(std::exchange(o.certs_, {})) {}
  CertList& operator=(CertList&&) = delete;
  CertList(const CertList&) = delete;
  CertList& operator=(const CertList&) = delete;

  // Parses every certificate of `text`, the PEM contents of `path`. Errors name the file.
  static Result<CertList> parse(const std::string& text, const std::string& path,
                                std::string_view what) {
    gnutls_datum_t data = datum_of(text);
    gnutls_x509_crt_t* list = nullptr;
    unsigned size = 0;
    int r = gnutls_x509_crt_list_import2(&list, &size, &data, GNUTLS_X509_FMT_PEM, 0);
    if (r < 0) return fail(load_error(what, path, r));
    CertList result;
    result.certs_.assign(list, list + size);
    gnutls_free(list);
    if (result.certs_.empty()) return fail(load_error(what, path, GNUTLS_E_NO_CERTIFICATE_FOUND));
    return result;
  }

  const std::vector<gnutls_x509_crt_t>& certs() const { return certs_; }

 private:
  std::vector<gnutls_x509_crt_t> certs_;
};

using PrivateKey = std::unique_ptr<std::remove_pointer_t<gnutls_x509_privkey_t>,
                                   decltype(&gnutls_x509_privkey_deinit)>;

// Parses a PEM private key (PKCS#1, PKCS#8 or SEC1, unencrypted). Errors name the file.
Result<PrivateKey> import_key(const std::string& path) {
  constexpr std::string_view kWhat = "TLS private key";
  Result<std::string> text = read_file(path, kWhat);
  if (!text) return fail(text.error());
  SecretText secret(std::move(*text));
  gnutls_x509_privkey_t raw = nullptr;
  int r = gnutls_x509_privkey_init(&raw);
  if (r < 0) return fail(load_error(kWhat, path, r));
  PrivateKey key(raw, &gnutls_x509_privkey_deinit);
  gnutls_datum_t data = datum_of(secret.text());
  r = gnutls_x509_privkey_import2(key.get(), &data, GNUTLS_X509_FMT_PEM, nullptr, 0);
  if (r < 0) return fail(load_error(kWhat, path, r));
  return key;
}

// `text` from the network made safe for a log line: at most 64 printable ASCII characters.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) out += c >= 0x20 && c < 0x7f ? c : '?';
  if (text.size() > 64) out += "...";
  return out;
}

bool self_issued(gnutls_x509_crt_t cert) { return gnutls_x509_crt_check_issuer(cert, cert) != 0; }

class TlsCredentialsImpl;

// Per-connection state that GnuTLS callbacks reach through gnutls_session_get_ptr.
struct SessionContext {
  const TlsCredentialsImpl* credentials = nullptr;
  std::string psk_identity;  // the identity the client offered, "" before the PSK lookup
  bool psk_identity_known = false;
};

// What tls_accept needs from credentials. Every TlsCredentials is one of these: the only
// way to make credentials is through the factories below.
class TlsCredentialsImpl : public TlsCredentials {
 public:
  ~TlsCredentialsImpl() override {
    if (priority_) gnutls_priority_deinit(priority_);
  }
  // Sets the priorities and credentials of a fresh server session, whose pointer
  // (gnutls_session_get_ptr) is its SessionContext. Returns a GnuTLS code.
  virtual int configure(gnutls_session_t session) const = 0;

 protected:
  // Compiles the priority string once; sessions share the result.
  Status init_priority(const char* priority) {
    const char* where = nullptr;
    int r = gnutls_priority_init(&priority_, priority, &where);
    if (r < 0) {
      priority_ = nullptr;
      return fail(Error::with_message(EINVAL, std::string("Invalid TLS priority string '") +
                                                  priority + "': " + gnutls_strerror(r)));
    }
    return ok();
  }
  gnutls_priority_t priority_ = nullptr;
};

class X509Credentials final : public TlsCredentialsImpl {
 public:
  X509Credentials() = default;
  ~X509Credentials() override {
    if (cred_) gnutls_certificate_free_credentials(cred_);
  }
  X509Credentials(const X509Credentials&) = delete;
  X509Credentials& operator=(const X509Credentials&) = delete;

  Status load(const std::string& dir, VerifyPeer verify) {
    verify_peer_ = verify == VerifyPeer::kYes;
    const std::string cert_path = dir + "/server-cert.pem";
    const std::string key_path = dir + "/server-key.pem";
    const std::string ca_path = dir + "/ca-cert.pem";

    Result<std::string> cert_text = read_file(cert_path, "TLS certificate");
    if (!cert_text) return fail(cert_text.error());
    Result<CertList> chain = CertList::parse(*cert_text, cert_path, "TLS certificate");
    if (!chain) return fail(chain.error());
    Result<PrivateKey> key = import_key(key_path);
    if (!key) return fail(key.error());
    // ca-cert.pem is optional: only its absence is not an error.
    std::optional<std::string> ca_text;
    std::optional<CertList> cas;
    Result<std::string> read_ca = read_file(ca_path, "TLS CA certificate");
    if (read_ca) {
      Result<CertList> list = CertList::parse(*read_ca, ca_path, "TLS CA certificate");
      if (!list) return fail(list.error());
      ca_text = std::move(*read_ca);
      cas.emplace(std::move(*list));
    } else if (read_ca.error().errnum() != ENOENT) {
      return fail(read_ca.error());
    }

    // The chain sent to clients: server-cert.pem as it is (it may already hold
    // intermediates), completed with issuers from ca-cert.pem up to, not including, the
    // self-signed root, which clients must have anyway (RFC 8446 §4.4.2 lets it be left out).
    std::vector<gnutls_x509_crt_t> sent = chain->certs();
    if (cas) {
      while (!self_issued(sent.back()) && sent.size() < 16) {
        auto issuer =
            std::find_if(cas->certs().begin(), cas->certs().end(), [&](gnutls_x509_crt_t ca) {
              return gnutls_x509_crt_check_issuer(sent.back(), ca) != 0 &&
                     std::find(sent.begin(), sent.end(), ca) == sent.end();
            });
        if (issuer == cas->certs().end() || self_issued(*issuer)) break;
        sent.push_back(*issuer);
      }
    }

    int r = gnutls_certificate_allocate_credentials(&cred_);
    if (r < 0) {
      cred_ = nullptr;
      return fail(load_error("TLS certificate", cert_path, r));
    }
    // Copies the certificates and the key (GnuTLS manual: gnutls_certificate_set_x509_key);
    // also checks that the key belongs to the first certificate.
    r = gnutls_certificate_set_x509_key(cred_, sent.data(), static_cast<int>(sent.size()),
                                        key->get());
    if (r < 0) {
      return fail(Error::with_message(EINVAL, "Could not use TLS certificate '" + cert_path +
                                                  "' with private key '" + key_path +
                                                  "': " + gnutls_strerror(r)));
    }
    if (ca_text) {
      // The trust list checks client certificates (verify-peer).
      gnutls_datum_t data = datum_of(*ca_text);
      r = gnutls_certificate_set_x509_trust_mem(cred_, &data, GNUTLS_X509_FMT_PEM);
      if (r < 0) return fail(load_error("TLS CA certificate", ca_path, r));
    }
    // Finite-field DHE parameters for TLS 1.2 clients that offer DHE without RFC 7919 groups.
    r = gnutls_certificate_set_known_dh_params(cred_, GNUTLS_SEC_PARAM_MEDIUM);
    if (r < 0) return fail(load_error("TLS certificate", cert_path, r));
    return init_priority(kX509Priority);
  }

  int configure(gnutls_session_t session) const override {
    int r = gnutls_priority_set(session, priority_);
    if (r < 0) return r;
    r = gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred_);
    if (r < 0 || !verify_peer_) return r;
    // verify-peer: a client certificate is required, and GnuTLS checks it against the trust
    // list (ca-cert.pem) during the handshake. No host name: clients have none to match.
    gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_cert(session, nullptr, 0);
    return 0;
  }

 private:
  gnutls_certificate_credentials_t cred_ = nullptr;
  bool verify_peer_ = false;
};

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class PskCredentials final : public TlsCredentialsImpl {
 public:
  PskCredentials() = default;
  ~PskCredentials() override {
    if (cred_) gnutls_psk_free_server_credentials(cred_);
    for (auto& [identity, key] : keys_) wipe(key.data(), key.size());
  }
  PskCredentials(const PskCredentials&) = delete;
  PskCredentials& operator=(const PskCredentials&) = delete;

  Status load(const std::string& path) {
    Result<std::string> text = read_file(path, "TLS PSK file");
    if (!text) return fail(text.error());
    SecretText secret(std::move(*text));
    Status parsed = parse(path, secret.text());
    if (!parsed) return parsed;

    int r = gnutls_psk_allocate_server_credentials(&cred_);
    if (r < 0) {
      cred_ = nullptr;
      return fail(load_error("TLS PSK file", path, r));
    }
    gnutls_psk_set_server_credentials_function(cred_, &PskCredentials::lookup);
    // Finite-field DHE parameters for TLS 1.2 DHE-PSK clients without RFC 7919 groups.
    r = gnutls_psk_set_server_known_dh_params(cred_, GNUTLS_SEC_PARAM_MEDIUM);
    if (r < 0) return fail(load_error("TLS PSK file", path, r));
    return init_priority(kPskPriority);
  }

  int configure(gnutls_session_t session) const override {
    int r = gnutls_priority_set(session, priority_);
    if (r < 0) return r;
    return gnutls_credentials_set(session, GNUTLS_CRD_PSK, cred_);
  }

 private:
  // One "identity:hexkey" per line (QEMU's keys.psk, libnbd's tls-psk-file, GnuTLS psktool).
  // Blank lines are skipped; anything else malformed is an error naming the line.
  Status parse(const std::string& path, const std::string& text) {
    std::size_t line_no = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.remove_suffix(1);
      if (line.empty()) continue;

      std::string where = "TLS PSK file '" + path + "' line " + std::to_string(line_no) + ": ";
      std::size_t colon = line.find(':');
      if (colon == std::string_view::npos || colon == 0) {
        return fail(Error::with_message(EINVAL, where + "expected 'identity:hexkey'"));
      }
      std::string identity(line.substr(0, colon));
      std::string_view hex = line.substr(colon + 1);
      std::vector<unsigned char> key(hex.size() / 2);
      bool valid = !hex.empty() && hex.size() % 2 == 0;
      for (std::size_t i = 0; valid && i < key.size(); ++i) {
        int hi = hex_value(hex[2 * i]);
        int lo = hex_value(hex[2 * i + 1]);
        valid = hi >= 0 && lo >= 0;
        if (valid) key[i] = static_cast<unsigned char>(hi << 4 | lo);
      }
      if (!valid) {
        wipe(key.data(), key.size());
        return fail(Error::with_message(
            EINVAL, where + "the key of '" + identity + "' is not an even number of hex digits"));
      }
      // try_emplace leaves `key` alone when the identity is taken, so it can be wiped.
      auto [it, inserted] = keys_.try_emplace(identity, std::move(key));
      if (!inserted) {
        wipe(key.data(), key.size());
        return fail(Error::with_message(EINVAL, where + "identity '" + identity + "' repeated"));
      }
    }
    if (keys_.empty()) {
      return fail(Error::with_message(EINVAL, "TLS PSK file '" + path + "' holds no keys"));
    }
    return ok();
  }

  // GnuTLS asks for the key of `identity`; it frees key->data with gnutls_free. Returns -1
  // for an unknown identity, which fails the handshake. The session's context (which GnuTLS's
  // callback does not get otherwise) leads to the credentials and keeps the identity for
  // error messages.
  static int lookup(gnutls_session_t session, const char* identity, gnutls_datum_t* key) {
    auto* context = static_cast<SessionContext*>(gnutls_session_get_ptr(session));
    const auto* self = static_cast<const PskCredentials*>(context->credentials);
    if (!identity) return -1;
    auto it = self->keys_.find(identity);
    context->psk_identity = identity;
    context->psk_identity_known = it != self->keys_.end();
    if (it == self->keys_.end()) return -1;
    key->data = static_cast<unsigned char*>(gnutls_malloc(it->second.size()));
    if (!key->data) return -1;
    std::memcpy(key->data, it->second.data(), it->second.size());
    key->size = static_cast<unsigned>(it->second.size());
    return 0;
  }

  gnutls_psk_server_credentials_t cred_ = nullptr;
  std::map<std::string, std::vector<unsigned char>, std::less<>> keys_;
};

// A GnuTLS server session over a non-blocking socket. Owns the socket and the session.
class TlsStream final : public Stream {
 public:
  TlsStream(EventLoop& loop, int fd)
      : loop_(loop), fd_(fd), staging_(std::make_unique<char[]>(kMaxRecord)) {}
  ~TlsStream() override {
    if (session_) gnutls_deinit(session_);
    ::close(fd_);
  }
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  // Makes the socket non-blocking and sets up the session (no I/O yet).
  Status init(const TlsCredentialsImpl& credentials);
  // Runs the server side of the handshake.
  Task<Status> handshake();
  // After the handshake: whether the authorization object `authz_id` lets the client in.
  Status check_authz(const std::string& authz_id) const;

  Task<Result<std::size_t>> read_some(void* buf, std::size_t len) override;
  Task<Status> write_all(std::span<const iovec> iov) override;
  void shutdown() override;
  int fd() const override { return fd_; }

 private:
  // Waits until the socket is ready for the direction GnuTLS blocked on. REQUIRES: called
  // right after a GnuTLS call returned GNUTLS_E_AGAIN or GNUTLS_E_INTERRUPTED, before any
  // other GnuTLS call on the session (gnutls_record_get_direction reports the last one).
  Task<Status> wait_ready();
  // Sends `len` bytes at `data` (≤ kMaxRecord: one record unless the peer negotiated a
  // smaller record size). The memory stays valid until the await finishes.
  Task<Status> send_record(const char* data, std::size_t len);
  // The Error for GnuTLS code `code` from operation `what`; `saved_errno` is errno right
  // after the call, reported as such when the socket itself failed.
  Error failure(int code, int saved_errno, std::string_view what) const;

  EventLoop& loop_;
  int fd_;
  gnutls_session_t session_ = nullptr;
  SessionContext context_;
  std::unique_ptr<char[]> staging_;  // gathers small iovecs into one record (write_all)
};

Status TlsStream::init(const TlsCredentialsImpl& credentials) {
  int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) {
    return fail(Error::from_errno(errno, "Could not make the TLS socket non-blocking"));
  }
  // NO_SIGNAL: GnuTLS sends with MSG_NOSIGNAL, so a vanished client is EPIPE, not SIGPIPE.
  int r = gnutls_init(&session_, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL);
  if (r < 0) {
    session_ = nullptr;
    return fail(failure(r, 0, "session setup"));
  }
  context_.credentials = &credentials;
  gnutls_session_set_ptr(session_, &context_);
  r = credentials.configure(session_);
  if (r < 0) return fail(failure(r, 0, "session setup"));
  gnutls_transport_set_int(session_, fd_);
  return ok();
}

Task<Status> TlsStream::wait_ready() {
  int events = gnutls_record_get_direction(session_) == 1 ? POLLOUT : POLLIN;
  for (;;) {
    // POLLERR and POLLHUP end the poll too; the retried GnuTLS call then reports them.
    int32_t r = co_await uring::poll(loop_, fd_, events);
    if (r >= 0) co_return ok();
    if (r != -EINTR) co_return fail(Error::from_errno(r, "poll on the TLS socket"));
  }
}

Error TlsStream::failure(int code, int saved_errno, std::string_view what) const {
  // A failed send(2) or recv(2) underneath: report the socket's own errno (ECONNRESET,
  // EPIPE, ...), as a plain socket stream would.
  if ((code == GNUTLS_E_PUSH_ERROR || code == GNUTLS_E_PULL_ERROR) && saved_errno > 0 &&
      saved_errno != EAGAIN && saved_errno != EINTR) {
    return Error::from_errno(saved_errno, "TLS " + std::string(what));
  }
  std::string message = "TLS " + std::string(what) + " failed: ";
  if (code == GNUTLS_E_SRP_PWD_ERROR && !context_.psk_identity.empty() &&
      !context_.psk_identity_known) {
    // GnuTLS's words for a failed PSK lookup are "Error in password/key file.".
    message += "unknown PSK identity '" + printable(context_.psk_identity) + "'";
  } else {
    message += gnutls_strerror(code);
  }
  if (code == GNUTLS_E_FATAL_ALERT_RECEIVED || code == GNUTLS_E_WARNING_ALERT_RECEIVED) {
    const char* alert = gnutls_alert_get_name(gnutls_alert_get(session_));
    if (alert) message += std::string(" (") + alert + ")";
  }
  // A known identity whose key does not match shows up as a bad PSK binder (TLS 1.3) or a
  // Finished message that does not decrypt (TLS 1.2).
  if (context_.psk_identity_known &&
      (code == GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER || code == GNUTLS_E_DECRYPTION_FAILED)) {
    message += " (does the client have the right key for PSK identity '" +
               printable(context_.psk_identity) + "'?)";
  }
  return Error::with_message(EIO, std::move(message));
}

Task<Status> TlsStream::handshake() {
  for (;;) {
    errno = 0;
    int r = gnutls_handshake(session_);
    int saved_errno = errno;
    if (r == GNUTLS_E_SUCCESS) co_return ok();
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      Status ready = co_await wait_ready();
      if (!ready) co_return ready;
      continue;
    }
    // A warning alert from the client; the handshake goes on.
    if (!gnutls_error_is_fatal(r)) continue;
    // Tell the client why, where TLS has an alert for it (best effort: the socket is
    // non-blocking and about to be closed).
    gnutls_alert_send_appropriate(session_, r);
    co_return fail(failure(r, saved_errno, "handshake"));
  }
}

Task<Result<std::size_t>> TlsStream::read_some(void* buf, std::size_t len) {
  for (;;) {
    errno = 0;
    ssize_t r = gnutls_record_recv(session_, buf, len);
    int saved_errno = errno;
    // 0: the client sent close_notify.
    if (r >= 0) co_return static_cast<std::size_t>(r);
    // The client closed the socket without close_notify, as NBD clients commonly do after
    // NBD_CMD_DISC. A truncation cannot pass unnoticed: NBD framing shows a cut message.
    if (r == GNUTLS_E_PREMATURE_TERMINATION) co_return 0;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      Status ready = co_await wait_ready();
      if (!ready) co_return fail(ready.error());
      continue;
    }
    if (r == GNUTLS_E_REHANDSHAKE) {
      co_return fail(Error::with_message(
          EIO, "TLS receive failed: the client asked for renegotiation, which is not supported"));
    }
    // A warning alert: nothing to deliver yet; read on.
    if (!gnutls_error_is_fatal(static_cast<int>(r))) continue;
    co_return fail(failure(static_cast<int>(r), saved_errno, "receive"));
  }
}

Task<Status> TlsStream::send_record(const char* data, std::size_t len) {
  std::size_t done = 0;
  while (done < len) {
    errno = 0;
    ssize_t r = gnutls_record_send(session_, data + done, len - done);
    int saved_errno = errno;
    if (r > 0) {
      done += static_cast<std::size_t>(r);
      continue;
    }
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
      // GnuTLS has kept the encrypted record; the retry below repeats the same call with the
      // same arguments, as gnutls_record_send requires after E_AGAIN.
      Status ready = co_await wait_ready();
      if (!ready) co_return ready;
      continue;
    }
    co_return fail(
        failure(r < 0 ? static_cast<int>(r) : GNUTLS_E_INTERNAL_ERROR, saved_errno, "send"));
  }
  co_return ok();
}

Task<Status> TlsStream::write_all(std::span<const iovec> iov) {
  std::size_t i = 0;       // the iovec being sent
  std::size_t offset = 0;  // bytes of iov[i] already sent or staged
  for (;;) {
    while (i < iov.size() && offset == iov[i].iov_len) {
      ++i;
      offset = 0;
    }
    if (i == iov.size()) co_return ok();
    const char* base = static_cast<const char*>(iov[i].iov_base) + offset;
    std::size_t left = iov[i].iov_len - offset;
    if (left >= kMaxRecord || i + 1 == iov.size()) {
      // A full record's worth, or the last piece: encrypt straight from the caller's memory.
      std::size_t n = std::min(left, kMaxRecord);
      Status sent = co_await send_record(base, n);
      if (!sent) co_return sent;
      offset += n;
      continue;
    }
    // Small pieces (an NBD reply header is 16 bytes) are gathered into one record rather than
    // each costing a record of its own: framing, MAC and a send(2).
    std::size_t filled = 0;
    while (i < iov.size() && filled < kMaxRecord) {
      std::size_t take = std::min(iov[i].iov_len - offset, kMaxRecord - filled);
      std::memcpy(staging_.get() + filled, static_cast<const char*>(iov[i].iov_base) + offset,
                  take);
      filled += take;
      offset += take;
      if (offset == iov[i].iov_len) {
        ++i;
        offset = 0;
      }
    }
    Status sent = co_await send_record(staging_.get(), filled);
    if (!sent) co_return sent;
  }
}

void TlsStream::shutdown() {
  // No close_notify (gnutls_bye): it could land in the middle of a record a suspended
  // write_all has half sent, and NBD clients do not wait for one. ENOTCONN on a second call
  // is fine.
  ::shutdown(fd_, SHUT_RDWR);
}

}  // namespace

Result<std::unique_ptr<TlsCredentials>> TlsCredentials::load_x509(const std::string& dir,
                                                                  VerifyPeer verify) {
  auto credentials = std::make_unique<X509Credentials>();
  Status loaded = credentials->load(dir, verify);
  if (!loaded) return fail(loaded.error());
  return std::unique_ptr<TlsCredentials>(std::move(credentials));
}

Result<std::unique_ptr<TlsCredentials>> TlsCredentials::load_psk(const std::string& file) {
  auto credentials = std::make_unique<PskCredentials>();
  Status loaded = credentials->load(file);
  if (!loaded) return fail(loaded.error());
  return std::unique_ptr<TlsCredentials>(std::move(credentials));
}

Status TlsStream::check_authz(const std::string& authz_id) const {
  Result<const AuthzObject*> authz = user_objects().authz(authz_id);
  if (!authz) return fail(Error::with_message(EACCES, authz.error().message()));
  // As QEMU: the x509 certificate the client presented (asked for with verify-peer) is
  // judged by its distinguished name; PSK sessions and sessions without one are not.
  if (gnutls_auth_get_type(session_) != GNUTLS_CRD_CERTIFICATE) return ok();
  unsigned count = 0;
  const gnutls_datum_t* peers = gnutls_certificate_get_peers(session_, &count);
  if (peers == nullptr || count == 0) return ok();
  gnutls_x509_crt_t cert = nullptr;
  if (gnutls_x509_crt_init(&cert) < 0) {
    return fail(Error::with_message(EACCES, "Cannot initialize x509 certificate"));
  }
  std::string dn;
  std::size_t size = 0;
  int r = gnutls_x509_crt_import(cert, &peers[0], GNUTLS_X509_FMT_DER);
  if (r >= 0) r = gnutls_x509_crt_get_dn(cert, nullptr, &size);
  if (r == GNUTLS_E_SHORT_MEMORY_BUFFER) {
    dn.resize(size);
    r = gnutls_x509_crt_get_dn(cert, dn.data(), &size);
    dn.resize(std::strlen(dn.c_str()));
  }
  gnutls_x509_crt_deinit(cert);
  if (r < 0) {
    return fail(Error::with_message(
        EACCES, std::string("Cannot get client distinguished name: ") + gnutls_strerror(r)));
  }
  if (!(*authz)->allows(dn)) {
    return fail(Error::with_message(EACCES, "TLS x509 authz check for " + dn + " is denied"));
  }
  return ok();
}

Task<Result<std::unique_ptr<Stream>>> tls_accept(EventLoop& loop, int fd,
                                                 const TlsCredentials& credentials,
                                                 const std::string& authz_id) {
  // The stream owns `fd` from here on: every failure below closes it.
  auto stream = std::make_unique<TlsStream>(loop, fd);
  // Every TlsCredentials comes from load_x509 or load_psk.
  Status ready = stream->init(static_cast<const TlsCredentialsImpl&>(credentials));
  if (!ready) co_return fail(ready.error());
  Status shaken = co_await stream->handshake();
  if (!shaken) co_return fail(shaken.error());
  if (!authz_id.empty()) {
    Status allowed = stream->check_authz(authz_id);
    if (!allowed) co_return fail(allowed.error());
  }
  co_return std::unique_ptr<Stream>(std::move(stream));
}

}  // namespace qblock::nbd
