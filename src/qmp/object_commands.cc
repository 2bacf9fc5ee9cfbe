// object-add and object-del: the user-creatable objects of --object (secret, iothread,
// tls-creds-*, authz-*) added and deleted at run time, with qemu-storage-daemon 7.2's errors,
// over the process's ObjectRegistry (qblock/user_objects.h).
#include <string>
#include <vector>

#include "qblock/user_objects.h"
#include "qmp/storage_daemon.h"

namespace qblock {

using qmp::ArgType;
using qmp::CommandResult;
using qmp::QmpError;
using qmp::required;

namespace {

// object-add: "qom-type", "id" and the type's own properties, flat.
Task<CommandResult> object_add(Options args) {
  // QMP's desc is the message without qemu-img's hint line.
  if (Status s = user_objects().add_options(args); !s) {
    co_return qmp_fail(QmpError::from_without_hint(s.error()));
  }
  co_return Options::object();
}

Task<CommandResult> object_del(Options args) {
  if (Status s = user_objects().remove(args["id"].get<std::string>()); !s) {
    co_return qmp_fail(QmpError::from(s.error()));
  }
  co_return Options::object();
}

}  // namespace

void StorageDaemon::Impl::register_object_commands() {
  dispatcher_.add(
      {"object-add", {}, [](Options args) { return object_add(std::move(args)); }, true});
  dispatcher_.add({"object-del", {required("id", ArgType::kString)}, [](Options args) {
                     return object_del(std::move(args));
                   }});
}

}  // namespace qblock
