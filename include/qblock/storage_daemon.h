// The storage daemon (public API): named block graphs added and removed at run time, an NBD
// server exporting them, and QMP monitors controlling both -- qemu-storage-daemon 7.2's model
// (docs/architecture.md, "Storage daemon"). `qblock storage-daemon` is its command line; the
// same object can be embedded. Everything runs on one EventLoop.
#pragma once

#include <memory>
#include <string>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/task.h"

namespace qblock {

// How a command-line option's value was written: dotted keys (every value a string, as QEMU's
// keyval parser gives them) or JSON (typed, checked like QMP's input).
enum class OptionSyntax { kDottedKeys, kJson };

class StorageDaemon {
 public:
  // `loop` must outlive the daemon.
  static std::unique_ptr<StorageDaemon> create(EventLoop& loop);
  // REQUIRES: run() has returned, or was never called and nothing was added.
  ~StorageDaemon();
  StorageDaemon(const StorageDaemon&) = delete;
  StorageDaemon& operator=(const StorageDaemon&) = delete;

  // The setup steps of the command line; each takes the arguments of the QMP command of the
  // same meaning (values may also be strings, as dotted keys give them) and fails with the
  // description QMP would reply with.
  // --blockdev / blockdev-add: opens a graph whose root has a node-name. JSON values are
  // type-checked against QEMU's schema as blockdev-add's are.
  Task<Status> add_blockdev(Options options, OptionSyntax syntax = OptionSyntax::kDottedKeys);
  // --nbd-server: {"addr": {"type": "unix", "path": P} | {"type": "inet", "host": H, "port":
  // N}, "max-connections": N}. Binds at once.
  Status start_nbd_server(Options options);
  // --export / block-export-add: {"type": "nbd", "id", "node-name", "name", "writable"}.
  Status add_export(Options options);
  // --chardev socket,path=P,server=on,wait=off --monitor chardev=...: a QMP monitor.
  Status add_monitor(const std::string& socket_path);

  // Serves the monitors and exports until quit() or a QMP "quit", then ends every export and
  // monitor connection and flushes and closes every image (preallocated tails trimmed).
  // Returns the first error of closing.
  Task<Status> run();
  // Makes run() shut down. Callable from any coroutine on the loop; idempotent.
  void quit();

  class Impl;

 private:
  explicit StorageDaemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qblock
