// The CLI's message sink (cli_messages.h).
#include "qblock/cli_messages.h"

#include <cstdio>
#include <string>
#include <string_view>

#include "qblock/messages.h"

namespace qblock::tools {

namespace {

void print_like_qemu(MessageLevel level, std::string_view text) {
  std::string line(text);
  line += '\n';
  if (level == MessageLevel::kInfo) {
    // qemu-io prints blkdebug's breakpoint lines on stdout and flushes at once, so they sit
    // between the commands' output lines.
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  // QEMU writes these to stderr with fprintf, after what the command printed so far.
  std::fflush(stdout);
  std::fputs(line.c_str(), stderr);
}

}  // namespace

void install_message_sink() { set_message_sink(&print_like_qemu); }

}  // namespace qblock::tools
