// The nbd protocol: an NBD client on libnbd, as QEMU 7.2's nbd driver. The bytes live on an
// NBD server (qemu-nbd, qblock nbd, nbdkit, ...) reached over TCP or a Unix socket; libnbd's
// aio API runs on the node's EventLoop (nbd_connection.h), so requests never block it.
#pragma once

#include "block/driver.h"

namespace qblock {

// Options (QEMU's): filename (nbd://HOST[:PORT]/EXPORT, nbd+tcp://..., nbd+unix:///EXPORT?
// socket=PATH, nbd:HOST:PORT[:exportname=E], nbd:unix:PATH[:exportname=E]), server.type
// (inet|unix), server.host, server.port, server.path, export, tls-creds, reconnect-delay,
// open-timeout, and the legacy host/port/path. tls-creds=ID names a client tls-creds-x509 or
// tls-creds-psk object (qblock/user_objects.h): TLS is then required, with QEMU's messages
// when either end has none; x509 over a Unix socket needs tls-hostname, as in QEMU (libnbd
// checks the certificate's name only over TCP, against server.host). Connection and handshake
// errors carry QEMU's messages ("Failed to connect to 'PATH': ...", "Requested export not
// available"). qblock's own option multi-conn=N (default 1, at most 16): with a server that
// advertises multi-conn, N connections share the requests round robin.
Task<Result<NodePtr>> open_nbd_node(OpenContext& ctx, Options& options);

}  // namespace qblock
