// qemu-nbd -L (nbd_list.h): one libnbd handle in option mode, driven synchronously; the
// process does nothing else while it lists.
#include "qblock/nbd_list.h"

#include <libnbd.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/user_objects.h"

namespace qblock::tools {
namespace {

// qemu-nbd 7.2 connects to its default bind address when -L has no -b.
constexpr const char* kDefaultHost = "0.0.0.0";
constexpr const char* kDefaultPort = "10809";

int fail(const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "qemu-nbd: %s\n", message.c_str());
  return EXIT_FAILURE;
}

struct ExportEntry {
  std::string name;
  std::string description;
};

int on_export(void* user_data, const char* name, const char* description) {
  static_cast<std::vector<ExportEntry>*>(user_data)->push_back({name, description});
  return 0;
}

int on_context(void* user_data, const char* name) {
  static_cast<std::vector<std::string>*>(user_data)->push_back(name);
  return 0;
}

// "PATH" or "HOST:PORT", as QEMU names the address in "Failed to connect to '...'".
std::string display(const NbdListArgs& args) {
  if (!args.socket_path.empty()) return args.socket_path;
  return (args.host.empty() ? kDefaultHost : args.host) + std::string(":") +
         (args.port.empty() ? kDefaultPort : args.port);
}

// A connected stream socket, or -1 with `message` set to QEMU's words.
int connect_socket(const NbdListArgs& args, std::string& message) {
  const std::string failed = "Failed to connect to '" + display(args) + "': ";
  if (!args.socket_path.empty()) {
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (args.socket_path.size() >= sizeof(sun.sun_path)) {
      message = "UNIX socket path '" + args.socket_path + "' is too long";
      return -1;
    }
    std::memcpy(sun.sun_path, args.socket_path.c_str(), args.socket_path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof(sun)) != 0) {
      message = failed + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return -1;
    }
    return fd;
  }
  const std::string host = args.host.empty() ? kDefaultHost : args.host;
  const std::string port = args.port.empty() ? kDefaultPort : args.port;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (const int r = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); r != 0) {
    message = "address resolution failed for " + host + ":" + port + ": " + gai_strerror(r);
    return -1;
  }
  int e = ECONNREFUSED;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      e = errno;
      continue;
    }
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      ::freeaddrinfo(res);
      return fd;
    }
    e = errno;
    ::close(fd);
  }
  ::freeaddrinfo(res);
  message = failed + std::strerror(e);
  return -1;
}

// Sets up TLS on `h` from the client credentials object `id`; false with `message` set.
bool set_tls(nbd_handle* h, const std::string& id, std::string& message) {
  Result<const TlsCredsObject*> creds = user_objects().tls_creds(id, TlsEndpoint::kClient);
  if (!creds) {
    message = "Failed to get TLS creds: " + creds.error().message();
    return false;
  }
  const TlsCredsObject& c = **creds;
  bool set = nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == 0;
  if (set && c.type == TlsCredsType::kPsk) {
    set = nbd_set_tls_psk_file(h, c.psk_file().c_str()) == 0 &&
          nbd_set_tls_username(h, c.username.c_str()) == 0;
  } else if (set) {
    set = nbd_set_tls_certificates(h, c.dir.c_str()) == 0 &&
          nbd_set_tls_verify_peer(h, c.verify_peer) == 0;
  }
  if (!set) message = nbd_get_error();
  return set;
}

// QEMU's words for a failed handshake or list, from libnbd's.
std::string handshake_message(const std::string& libnbd_message, bool tls) {
  if (tls && libnbd_message.find("server refused TLS") != std::string::npos) {
    return "Denied by server for option 5 (starttls)\nserver reported: TLS not configured";
  }
  if (!tls && (libnbd_message.find("requires TLS") != std::string::npos ||
               libnbd_message.find("error to list request") != std::string::npos)) {
    // libnbd keeps neither the error type nor the server's text; qemu-nbd and qblock nbd
    // refuse NBD_OPT_LIST before TLS only when TLS is required, with these words.
    return "TLS negotiation required before option 3 (list)\nDid you forget a valid "
           "tls-creds?\nserver reported: Option 0x3 not permitted before TLS";
  }
  constexpr std::string_view kGnutls = "gnutls_handshake: ";
  if (const std::size_t at = libnbd_message.find(kGnutls); tls && at != std::string::npos) {
    // "gnutls_handshake: TEXT (CODE/ALERT)" is GnuTLS's TEXT, which QEMU prints alone.
    std::string text = libnbd_message.substr(at + kGnutls.size());
    if (const std::size_t paren = text.rfind(" ("); paren != std::string::npos) {
      text.resize(paren);
    }
    return "TLS handshake failed: " + text;
  }
  return libnbd_message;
}

// qemu-nbd's names of the transmission flag bits 1..11 (bit 0 is NBD_FLAG_HAS_FLAGS).
constexpr const char* kFlagNames[] = {nullptr,      "readonly", "flush",  "fua",
                                      "rotational", "trim",     "zeroes", "df",
                                      "multi",      "resize",   "cache",  "fast-zero"};

// The transmission flags libnbd saw in the last NBD_OPT_INFO reply.
uint32_t export_flags(nbd_handle* h) {
  uint32_t flags = 1;  // NBD_FLAG_HAS_FLAGS
  const int bits[] = {nbd_is_read_only(h),  nbd_can_flush(h),      nbd_can_fua(h),
                      nbd_is_rotational(h), nbd_can_trim(h),       nbd_can_zero(h),
                      nbd_can_df(h),        nbd_can_multi_conn(h), 0 /* resize */,
                      nbd_can_cache(h),     nbd_can_fast_zero(h)};
  for (std::size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); ++i) {
    if (bits[i] > 0) flags |= 1u << (i + 1);
  }
  return flags;
}

// Prints one export: INFO for its size, flags and block sizes, then its meta contexts.
// False with `message` set when the server refused.
bool print_export(nbd_handle* h, const ExportEntry& entry, std::string& message) {
  if (nbd_set_export_name(h, entry.name.c_str()) != 0 || nbd_opt_info(h) != 0) {
    message = nbd_get_error();
    return false;
  }
  std::printf(" export: '%s'\n", entry.name.c_str());
  if (!entry.description.empty()) std::printf("  description: %s\n", entry.description.c_str());
  const int64_t size = nbd_get_size(h);
  const uint32_t flags = export_flags(h);
  std::printf("  size:  %" PRId64 "\n", size);
  std::printf("  flags: 0x%x (", flags);
  for (std::size_t bit = 0; bit < sizeof(kFlagNames) / sizeof(kFlagNames[0]); ++bit) {
    if (kFlagNames[bit] && (flags & (1u << bit))) std::printf(" %s", kFlagNames[bit]);
  }
  std::printf(" )\n");
  const int64_t min_block = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
  if (min_block > 0) {
    std::printf("  min block: %" PRId64 "\n", min_block);
    std::printf("  opt block: %" PRId64 "\n", nbd_get_block_size(h, LIBNBD_SIZE_PREFERRED));
    std::printf("  max block: %" PRId64 "\n", nbd_get_block_size(h, LIBNBD_SIZE_MAXIMUM));
  }
  std::vector<std::string> contexts;
  nbd_context_callback cb = {.callback = &on_context, .user_data = &contexts, .free = nullptr};
  if (nbd_opt_list_meta_context(h, cb) < 0) contexts.clear();  // none without structured replies
  std::printf("  available meta contexts: %zu\n", contexts.size());
  for (const std::string& c : contexts) std::printf("   %s\n", c.c_str());
  return true;
}

}  // namespace

int list_nbd_exports(const NbdListArgs& args) {
  nbd_handle* h = nbd_create();
  if (!h) return fail(nbd_get_error());
  std::string message;
  const bool tls = !args.tls_creds.empty();
  bool x509_verify = false;  // the server's certificate is checked (x509, verify-peer=on)
  if (tls) {
    Result<const TlsCredsObject*> creds =
        user_objects().tls_creds(args.tls_creds, TlsEndpoint::kClient);
    x509_verify = creds && (*creds)->type == TlsCredsType::kX509 && (*creds)->verify_peer;
  }
  if ((tls && !set_tls(h, args.tls_creds, message)) || nbd_set_opt_mode(h, true) != 0) {
    if (message.empty()) message = nbd_get_error();
    nbd_close(h);
    return fail(message);
  }
  const int fd = connect_socket(args, message);
  if (fd < 0) {
    nbd_close(h);
    return fail(message);
  }
  if (nbd_connect_socket(h, fd) != 0) {  // the handle owns fd from here on
    message = handshake_message(nbd_get_error(), tls);
    nbd_close(h);
    return fail(message);
  }
  if (x509_verify && !args.socket_path.empty()) {
    // QEMU checks the certificate against the host name it connected to, after the
    // handshake; a Unix socket has none.
    nbd_close(h);
    return fail("No hostname for certificate validation");
  }
  std::vector<ExportEntry> exports;
  nbd_list_callback list_cb = {.callback = &on_export, .user_data = &exports, .free = nullptr};
  if (nbd_opt_list(h, list_cb) < 0) {
    message = handshake_message(nbd_get_error(), tls);
    nbd_close(h);
    return fail(message);
  }
  std::printf("exports available: %zu\n", exports.size());
  for (const ExportEntry& entry : exports) {
    if (!print_export(h, entry, message)) {
      nbd_close(h);
      return fail(message);
    }
  }
  nbd_opt_abort(h);
  nbd_close(h);
  return EXIT_SUCCESS;
}

}  // namespace qblock::tools
