// Listening sockets (public API): the stream sockets servers accept clients on, opened as
// QEMU opens its own (qemu-nbd, qemu-storage-daemon's NBD server and QMP monitor chardev).
#pragma once

#include <string>

#include "qblock/error.h"

namespace qblock {

// listen_unix: a stream socket bound at `path` (a stale socket file left by a killed server is
// replaced; anything else at that path makes it fail); errors "Failed to bind socket to PATH:
// <strerror>" and EINVAL "UNIX socket path '...' is too long". listen_tcp: the first address
// getaddrinfo gives for host:port that binds (SO_REUSEADDR); errors "address resolution failed
// for HOST:PORT: <gai text>" and "Failed to find an available port: <strerror>". Messages are
// QEMU's whole sentences (Error::message() returns them as they are); the caller owns the fd.
Result<int> listen_unix(const std::string& path);
Result<int> listen_tcp(const std::string& host, const std::string& port);

}  // namespace qblock
