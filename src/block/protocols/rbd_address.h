// Which RBD image the rbd protocol driver opens: QEMU 7.2's rbd filenames
// ("rbd:pool/[namespace/]image[@snap][:key=value...]", with backslash escapes) and its options
// tree ("pool", "namespace", "image", "snapshot", "conf", "user", ...). Pure parsing, no I/O,
// so that it is unit-tested on its own (rbd_address_test.cc).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock::rbd_client {

// One RBD image (or snapshot of one), as QEMU's rbd driver holds it.
struct RbdAddress {
  std::string pool;
  std::string ns;  // RADOS namespace; empty: the default one
  std::string image;
  std::string snapshot;       // empty: the image head (writable)
  bool has_snapshot = false;  // "@" given, even with an empty name (QEMU prints it then)
  std::string conf;           // ceph.conf path; empty: librados' default search (CEPH_CONF, /etc)
  std::string user;           // client id ("admin" when empty)
  // Further "key=value" pairs of the filename, set on the cluster handle with
  // rados_conf_set in order ("mon_host", "key", "keyring", "rbd_cache", ...).
  std::vector<std::pair<std::string, std::string>> config;

  // "pool/image", "pool/ns/image", plus "@snap": how error messages name the image.
  std::string display() const;
  // The file-level part of the name qemu-img 7.2 shows for the image, e.g.
  // {"pool": "rbd", "image": "x", "driver": "rbd", "namespace": ""} (QEMU's key order and
  // separators).
  std::string qemu_json() const;
};

// True when `filename` names the rbd protocol ("rbd:" prefix).
bool has_rbd_prefix(std::string_view filename);

// Parses a "rbd:..." filename into `options` (pool, namespace, image, snapshot, conf, user,
// and the other pairs under "=keyvalue-pairs" as a JSON array string, as QEMU does).
// Errors: EINVAL with QEMU's messages ("Pool name is required", "Image name is required"...).
[[nodiscard]] Status parse_rbd_filename(std::string_view filename, Options& options);

// Takes the address options (filename, pool, namespace, image, snapshot, conf, user,
// =keyvalue-pairs) from `options` and validates them. Errors: EINVAL "Parameter 'pool' is
// missing", "Parameter 'image' is missing", and parse_rbd_filename's.
[[nodiscard]] Result<RbdAddress> take_rbd_address(Options& options);

}  // namespace qblock::rbd_client
