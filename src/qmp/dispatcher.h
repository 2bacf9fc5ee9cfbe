// The QMP dispatcher: the table of commands a monitor accepts and the checks QEMU makes on every
// input before a command runs (qmp-spec.rst "Commands"): the envelope ("execute", "arguments",
// "id"), capabilities negotiation, the command's existence and its arguments (schema.h). It
// turns each input into exactly one reply object.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"
#include "qblock/task.h"
#include "qmp/qmp_error.h"
#include "qmp/schema.h"

namespace qblock::qmp {

// A command's implementation. It gets the checked "arguments" object ({} when absent).
using Handler = std::function<Task<CommandResult>(Options args)>;

struct CommandSpec {
  std::string name;
  std::vector<ArgSpec> args;
  Handler handler;
  // The handler checks its arguments itself (flat unions such as blockdev-add's).
  bool handler_checks_args = false;
};

// Per-connection negotiation state (qmp-spec.rst "Capabilities negotiation").
struct Session {
  bool negotiated = false;
};

class Dispatcher {
 public:
  // Adds a command. REQUIRES: the name is not taken and is not "qmp_capabilities", which the
  // dispatcher implements itself.
  void add(CommandSpec command);

  // Answers one input: a parsed value or the framing/parse error for it (json_stream.h).
  // Returns the reply object ({"return": ...} or {"error": {"class", "desc"}}, with "id" when
  // the input had one). Runs the handler only after every check passed.
  Task<Options> dispatch(Result<Options> input, Session& session);

  // Every command name, qmp_capabilities included (query-commands).
  std::vector<std::string> command_names() const;

 private:
  std::map<std::string, CommandSpec> commands_;
};

// {"error": {"class": ..., "desc": ...}}.
Options error_reply(const QmpError& e);

}  // namespace qblock::qmp
