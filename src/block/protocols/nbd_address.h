// Where the nbd protocol driver connects: QEMU's nbd filenames (nbd://, nbd+tcp://,
// nbd+unix://, the legacy nbd:HOST:PORT / nbd:unix:PATH forms) and the options tree
// ("server": {"type", "host", "port", "path"}, "export", the legacy "host"/"port"/"path").
// Pure parsing, no I/O, so that it is unit-tested on its own (nbd_address_test.cc).
#pragma once

#include <string>
#include <string_view>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock::nbd_client {

inline constexpr std::string_view kDefaultPort = "10809";

// One NBD server address and export, as QEMU's nbd driver holds it.
struct NbdAddress {
  enum class Type { kInet, kUnix };
  Type type = Type::kInet;
  std::string host;  // kInet
  std::string port;  // kInet; a number or a service name, as given
  std::string path;  // kUnix: the socket's path
  std::string export_name;

  // The normalized filename QEMU prints: "nbd+unix:///EXPORT?socket=PATH" or
  // "nbd://HOST:PORT/EXPORT"; without an export name "nbd+unix://?socket=PATH" and
  // "nbd://HOST:PORT".
  std::string uri() const;
  // "PATH" or "HOST:PORT", as in "Failed to connect to '...'".
  std::string display() const;
};

// True when `filename` names the nbd protocol by its prefix ("nbd:", "nbd+...:", "nbds...:"):
// BlockBackend then hands it to the nbd driver as "filename", which reports unknown schemes
// ("Unknown protocol 'nbds+unix'", as 7.2 has no nbds) itself.
bool has_nbd_prefix(std::string_view filename);

// Parses a filename into `options` (server.*, export), QEMU's way. Errors: EINVAL "No valid
// URL specified", "Unknown protocol 'X'", "error parsing address 'X'".
[[nodiscard]] Status parse_nbd_filename(std::string_view filename, Options& options);

// Takes the address options (filename, server.*, export, host/port/path) from `options` and
// validates them with QEMU's messages ("NBD server address missing", "Parameter 'path' is
// missing", "Parameter 'type' does not accept value 'x'", ...).
[[nodiscard]] Result<NbdAddress> take_nbd_address(Options& options);

}  // namespace qblock::nbd_client
