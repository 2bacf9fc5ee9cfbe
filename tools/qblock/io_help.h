// The command table texts of `qblock io`: each command's usage tail ("ARGS -- ONELINE") and
// extended help, as qemu-io 7.2 prints them (qemu-compat.md §2.6; tests/iotests/010-help.out).
#pragma once

#include <string_view>

namespace qblock::tools {

struct IoHelpText {
  std::string_view name;      // canonical command name
  std::string_view tail;      // printed after the name: " ARGS -- ONELINE"
  std::string_view extended;  // printed after the usage line by `help CMD` (may be empty)
};

// The text of command `name` (canonical name), or nullptr.
const IoHelpText* find_io_help(std::string_view name);

// Every command in `help` order.
const IoHelpText* io_help_begin();
const IoHelpText* io_help_end();

}  // namespace qblock::tools
