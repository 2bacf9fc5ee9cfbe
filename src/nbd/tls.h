// TLS for the NBD server (STARTTLS): a Stream that runs a GnuTLS session over a socket served
// by the event loop. The credentials (TlsCredentials) are public: qblock/nbd_server.h.
#pragma once

#include <memory>
#include <string>

#include "nbd/stream.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/nbd_server.h"
#include "qblock/task.h"

namespace qblock::nbd {

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
// With `authz_id` (qemu-nbd --tls-authz), the client's x509 certificate must then satisfy
// that authorization object of user_objects(): EACCES "TLS x509 authz check for DN is denied"
// or "Cannot find QAuthZ object ID ID" otherwise (QEMU's words).
// REQUIRES: `credentials` outlives the returned stream (sessions use it until destroyed).
Task<Result<std::unique_ptr<Stream>>> tls_accept(EventLoop& loop, int fd,
                                                 const TlsCredentials& credentials,
                                                 const std::string& authz_id = "");

}  // namespace qblock::nbd
