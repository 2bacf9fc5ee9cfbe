// `qblock nbd -L`: qemu-nbd's list mode. Acts as an NBD client (libnbd in option mode): asks
// a server for its exports (NBD_OPT_LIST), then for each one its size, transmission flags and
// block sizes (NBD_OPT_INFO) and its meta contexts (NBD_OPT_LIST_META_CONTEXT), and prints
// them in qemu-nbd 7.2's format.
#pragma once

#include <string>

namespace qblock::tools {

// Where to connect and how: -k PATH, or -b HOST / -p PORT (TCP), and --tls-creds.
struct NbdListArgs {
  std::string socket_path;  // non-empty: a Unix socket
  std::string host;         // TCP host; empty: qemu-nbd's default
  std::string port;         // TCP port; empty: 10809
  std::string tls_creds;    // the id of a client --object tls-creds-*; empty: no TLS
};

// Connects, lists, prints to stdout (errors to stderr as "qemu-nbd: ..."), and returns the
// exit status: 0 when the list was printed, 1 when connecting or negotiating failed.
int list_nbd_exports(const NbdListArgs& args);

}  // namespace qblock::tools
