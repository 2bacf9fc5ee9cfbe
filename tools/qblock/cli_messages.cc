// The CLI's message sink (cli_messages.h).
#include "qblock/cli_messages.h"

#include "qblock/messages.h"

namespace qblock::tools {

// QEMU's tools print these lines the way the library's default printer does (qemu-io's
// blkdebug lines on stdout and flushed at once; the rest on stderr after what the command
// printed so far), so the CLI installs that printer explicitly: an embedder's earlier sink
// never applies to the command line.
void install_message_sink() { set_message_sink(&print_message); }

}  // namespace qblock::tools
