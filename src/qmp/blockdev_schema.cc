// blockdev-add's arguments checked the way QEMU 7.2's QAPI input visitor checks BlockdevOptions
// before anything is opened: the driver, the base members, then the driver's own members, in
// the schema's order, and last the keys that neither names. The member lists follow QEMU 7.2's
// schema (observed with query-qmp-schema and qemu-storage-daemon's replies): every member of a
// driver qblock registers is listed, including the ones qblock ignores, so that they pass the
// type check as they do in QEMU.
#include <algorithm>
#include <map>

#include "qblock/debug_event.h"
#include "qblock/driver/driver.h"
#include "qmp/schema.h"

namespace qblock::qmp {

namespace {

ArgSpec opt(std::string name, ArgType type) { return optional(std::move(name), type); }

ArgSpec ref(std::string name) { return required(std::move(name), ArgType::kBlockdevRef); }

ArgSpec list_of(std::string name, ArgSpec element, bool is_required = false) {
  element.name = "null";  // QEMU's name for list elements in enum and alternate messages
  ArgSpec s = is_required ? required(std::move(name), ArgType::kList)
                          : optional(std::move(name), ArgType::kList);
  s.members.push_back(std::move(element));
  return s;
}

ArgSpec union_of(std::string name, ArgSpec tag, std::vector<ArgSpec> variants, bool is_required) {
  ArgSpec s = is_required ? required(std::move(name), ArgType::kUnion)
                          : optional(std::move(name), ArgType::kUnion);
  s.members.push_back(std::move(tag));
  s.variants = std::move(variants);
  return s;
}

std::vector<std::string> debug_events() {
  std::vector<std::string> names;
  for (size_t i = 0; i < static_cast<size_t>(DebugEvent::kCount); ++i) {
    names.emplace_back(debug_event_name(static_cast<DebugEvent>(i)));
  }
  return names;
}

// BlockdevOptionsBase: the members every node has, in schema order.
const std::vector<ArgSpec>& base_members() {
  static const std::vector<ArgSpec> kBase = {
      opt("node-name", ArgType::kString),
      enum_arg("discard", {"ignore", "unmap"}, false),
      optional("cache", ArgType::kObject,
               {opt("direct", ArgType::kBool), opt("no-flush", ArgType::kBool)}),
      opt("read-only", ArgType::kBool),
      opt("auto-read-only", ArgType::kBool),
      opt("force-share", ArgType::kBool),
      enum_arg("detect-zeroes", {"off", "on", "unmap"}, false),
  };
  return kBase;
}

std::vector<ArgSpec> file_members() {
  return {required("filename", ArgType::kString),
          opt("pr-manager", ArgType::kString),
          enum_arg("locking", {"auto", "on", "off"}, false),
          enum_arg("aio", {"threads", "native", "io_uring"}, false),
          opt("aio-max-batch", ArgType::kInt),
          opt("drop-cache", ArgType::kBool),
          opt("x-check-cache-dropped", ArgType::kBool)};
}

std::vector<ArgSpec> nbd_members() {
  ArgSpec server =
      union_of("server", enum_arg("type", {"inet", "unix", "vsock", "fd"}),
               {optional("inet", ArgType::kObject,
                         {required("host", ArgType::kString), required("port", ArgType::kString),
                          opt("numeric", ArgType::kBool), opt("to", ArgType::kUint16),
                          opt("ipv4", ArgType::kBool), opt("ipv6", ArgType::kBool),
                          opt("keep-alive", ArgType::kBool), opt("mptcp", ArgType::kBool)}),
                optional("unix", ArgType::kObject,
                         {required("path", ArgType::kString), opt("abstract", ArgType::kBool),
                          opt("tight", ArgType::kBool)}),
                optional("vsock", ArgType::kObject,
                         {required("cid", ArgType::kString), required("port", ArgType::kString)}),
                optional("fd", ArgType::kObject, {required("str", ArgType::kString)})},
               true);
  return {std::move(server),
          opt("export", ArgType::kString),
          opt("tls-creds", ArgType::kString),
          opt("tls-hostname", ArgType::kString),
          opt("x-dirty-bitmap", ArgType::kString),
          opt("reconnect-delay", ArgType::kUint32),
          opt("open-timeout", ArgType::kUint32)};
}

std::vector<ArgSpec> null_members() {
  return {opt("size", ArgType::kInt), opt("latency-ns", ArgType::kUint64),
          opt("read-zeroes", ArgType::kBool)};
}

std::vector<ArgSpec> qcow2_members() {
  const std::vector<std::string> templates = {"none", "constant", "cached", "all"};
  std::vector<ArgSpec> checks = {enum_arg("template", templates, false)};
  for (const char* c : {"main-header", "active-l1", "active-l2", "refcount-table", "refcount-block",
                        "snapshot-table", "inactive-l1", "inactive-l2", "bitmap-directory"}) {
    checks.push_back(opt(c, ArgType::kBool));
  }
  ArgSpec overlap = optional("overlap-check", ArgType::kEnumOrObject, std::move(checks), templates);
  overlap.type_name = "Qcow2OverlapChecks";
  ArgSpec encrypt =
      union_of("encrypt", enum_arg("format", {"aes", "luks"}),
               {optional("aes", ArgType::kObject, {opt("key-secret", ArgType::kString)}),
                optional("luks", ArgType::kObject, {opt("key-secret", ArgType::kString)})},
               false);
  return {ref("file"),
          optional("backing", ArgType::kBlockdevRefOrNull),
          opt("lazy-refcounts", ArgType::kBool),
          opt("pass-discard-request", ArgType::kBool),
          opt("pass-discard-snapshot", ArgType::kBool),
          opt("pass-discard-other", ArgType::kBool),
          std::move(overlap),
          opt("cache-size", ArgType::kInt),
          opt("l2-cache-size", ArgType::kInt),
          opt("l2-cache-entry-size", ArgType::kInt),
          opt("refcount-cache-size", ArgType::kInt),
          opt("cache-clean-interval", ArgType::kInt),
          std::move(encrypt),
          optional("data-file", ArgType::kBlockdevRef)};
}

std::vector<ArgSpec> rbd_members() {
  ArgSpec encrypt =
      union_of("encrypt", enum_arg("format", {"luks", "luks2"}),
               {optional("luks", ArgType::kObject, {required("key-secret", ArgType::kString)}),
                optional("luks2", ArgType::kObject, {required("key-secret", ArgType::kString)})},
               false);
  return {required("pool", ArgType::kString),
          opt("namespace", ArgType::kString),
          required("image", ArgType::kString),
          opt("conf", ArgType::kString),
          opt("snapshot", ArgType::kString),
          std::move(encrypt),
          opt("user", ArgType::kString),
          list_of("auth-client-required", enum_arg("", {"cephx", "none"})),
          opt("key-secret", ArgType::kString),
          list_of("server", required("", ArgType::kObject,
                                     {required("host", ArgType::kString),
                                      required("port", ArgType::kString)}))};
}

std::vector<ArgSpec> blkdebug_members() {
  const std::vector<std::string> events = debug_events();
  const std::vector<std::string> perms = {"consistent-read", "write", "write-unchanged", "resize"};
  std::vector<ArgSpec> members = {ref("image"), opt("config", ArgType::kString)};
  for (const char* m : {"align", "max-transfer", "opt-write-zero", "max-write-zero", "opt-discard",
                        "max-discard"}) {
    members.push_back(opt(m, ArgType::kInt));
  }
  members.push_back(list_of(
      "inject-error",
      required(
          "", ArgType::kObject,
          {enum_arg("event", events), opt("state", ArgType::kInt),
           enum_arg("iotype", {"read", "write", "write-zeroes", "discard", "flush", "block-status"},
                    false),
           opt("errno", ArgType::kInt), opt("sector", ArgType::kInt), opt("once", ArgType::kBool),
           opt("immediately", ArgType::kBool)})));
  members.push_back(
      list_of("set-state", required("", ArgType::kObject,
                                    {enum_arg("event", events), opt("state", ArgType::kInt),
                                     required("new_state", ArgType::kInt)})));
  members.push_back(list_of("take-child-perms", enum_arg("", perms)));
  members.push_back(list_of("unshare-child-perms", enum_arg("", perms)));
  return members;
}

// The driver's own members (BlockdevOptions<Driver>), for the drivers qblock registers that
// QEMU's schema knows.
const std::map<std::string, std::vector<ArgSpec>>& driver_members() {
  static const std::map<std::string, std::vector<ArgSpec>> kMembers = {
      {"file", file_members()},
      {"host_device", file_members()},
      {"nbd", nbd_members()},
      {"null-co", null_members()},
      {"null-aio", null_members()},
      {"rbd", rbd_members()},
      {"raw", {ref("file"), opt("offset", ArgType::kInt), opt("size", ArgType::kInt)}},
      {"qcow2", qcow2_members()},
      {"luks", {ref("file"), opt("key-secret", ArgType::kString)}},
      {"blkdebug", blkdebug_members()},
      {"preallocate",
       {ref("file"), opt("prealloc-align", ArgType::kInt), opt("prealloc-size", ArgType::kInt)}},
      {"copy-on-read", {ref("file"), opt("bottom", ArgType::kString)}},
      {"compress", {ref("file")}},
      {"blkverify", {ref("test"), ref("raw")}},
      {"quorum",
       {opt("blkverify", ArgType::kBool),
        list_of("children", required("", ArgType::kBlockdevRef), true),
        required("vote-threshold", ArgType::kInt), opt("rewrite-corrupted", ArgType::kBool),
        enum_arg("read-pattern", {"quorum", "fifo"}, false)}},
      {"throttle", {required("throttle-group", ArgType::kString), ref("file")}},
  };
  return kMembers;
}

}  // namespace

const std::vector<std::string>& qemu_blockdev_drivers() {
  static const std::vector<std::string> kDrivers = {
      "blkdebug",     "blklogwrites", "blkreplay",   "blkverify",
      "bochs",        "cloop",        "compress",    "copy-before-write",
      "copy-on-read", "dmg",          "file",        "snapshot-access",
      "ftp",          "ftps",         "gluster",     "host_cdrom",
      "host_device",  "http",         "https",       "iscsi",
      "luks",         "nbd",          "nfs",         "null-aio",
      "null-co",      "nvme",         "parallels",   "preallocate",
      "qcow",         "qcow2",        "qed",         "quorum",
      "raw",          "rbd",          "replication", "ssh",
      "throttle",     "vdi",          "vhdx",        "vmdk",
      "vpc",          "vvfat"};
  return kDrivers;
}

std::optional<QmpError> blockdev_driver(const Options& args, const std::string& prefix,
                                        std::string& driver) {
  auto it = args.find("driver");
  if (it == args.end()) return QmpError::generic("Parameter '" + prefix + "driver' is missing");
  if (!it->is_string()) {
    return QmpError::generic("Invalid parameter type for '" + prefix + "driver', expected: string");
  }
  driver = it->get<std::string>();
  return std::nullopt;
}

std::optional<QmpError> check_blockdev_options(const Options& args, const std::string& prefix) {
  std::string driver;
  if (std::optional<QmpError> e = blockdev_driver(args, prefix, driver)) return e;
  const std::vector<std::string>& known = qemu_blockdev_drivers();
  const bool in_schema = std::find(known.begin(), known.end(), driver) != known.end();
  auto members = driver_members().find(driver);
  if (find_driver(driver) == nullptr || (in_schema && members == driver_members().end())) {
    // QEMU names the member without its path in this message.
    return QmpError::generic("Parameter 'driver' does not accept value '" + driver + "'");
  }
  if (std::optional<QmpError> e = check_arguments(args, base_members(), prefix, true)) return e;
  if (members == driver_members().end()) return std::nullopt;  // qblock's own drivers (tests)
  if (std::optional<QmpError> e = check_arguments(args, members->second, prefix, true)) return e;
  std::vector<ArgSpec> all = {required("driver", ArgType::kString)};
  all.insert(all.end(), base_members().begin(), base_members().end());
  all.insert(all.end(), members->second.begin(), members->second.end());
  return check_arguments(args, all, prefix);
}

}  // namespace qblock::qmp
