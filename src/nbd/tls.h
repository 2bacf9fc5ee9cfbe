// TLS for the NBD server (STARTTLS): server credentials in qemu-nbd's layouts and a Stream
// that runs a GnuTLS session over a socket served by the event loop.
#pragma once

#include <memory>
#include <string>

#include "nbd/stream.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock::nbd {

// Server credentials, loaded once at startup and shared by every connection. Immutable once
// loaded, so any number of sessions may use them. Instances come only from the factories.
class TlsCredentials {
 public:
  // x509: `dir` holds server-cert.pem (the server's certificate, optionally followed by
  // intermediates) and server-key.pem (its unencrypted PEM key), and optionally ca-cert.pem
  // -- the layout of QEMU's tls-creds-x509 object. CA certificates from ca-cert.pem that
  // issue the last certificate of server-cert.pem are appended to the chain sent to clients,
  // up to but excluding the self-signed root; ca-cert.pem is also loaded as the trust list.
  // Client certificates are not requested. Sessions negotiate GnuTLS's "NORMAL" priorities.
  // Errors name the file: ENOENT etc. "Could not read TLS certificate '<dir>/server-cert.pem'"
  // when a file cannot be read; EINVAL "Could not load ..." when it does not parse, and
  // "Could not use TLS certificate '...' with private key '...'" when they do not match.
  static Result<std::unique_ptr<TlsCredentials>> load_x509(const std::string& dir);
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

// Runs the server side of a TLS handshake on `fd` (a connected socket; ownership passes to
// the returned stream, and the descriptor is closed on failure) and returns the encrypted
// stream. The socket is switched to non-blocking mode; waiting is done with io_uring poll, so
// a slow peer blocks only its own connection. There is no timeout: a client that stops
// mid-handshake holds the call until the socket is shut down (shutdown(2) on `fd` makes it
// fail soon), so bound it from outside if needed.
// The stream's read_some returns 0 when the client closes, with or without close_notify;
// shutdown() sends no close_notify. A read_some and a write_all may be in flight at once.
// Errors (here and from the stream): EIO with a message "TLS handshake|receive|send failed:
// <GnuTLS's message>" (an unknown PSK identity and a probably wrong PSK key are named as
// such); the socket's errno (ECONNRESET, EPIPE, ...) when the socket itself fails.
// REQUIRES: `credentials` outlives the returned stream (sessions use it until destroyed).
Task<Result<std::unique_ptr<Stream>>> tls_accept(EventLoop& loop, int fd,
                                                 const TlsCredentials& credentials);

}  // namespace qblock::nbd
