// The CLI's message sink: where the library's own lines (qcow2 corruption events, check
// findings, blkdebug breakpoints) go when qblock runs as a command.
#pragma once

namespace qblock::tools {

// Installs the sink for the process: each line exactly as QEMU's tools print it (qemu-io's
// blkdebug lines on stdout; qcow2's corruption events and qemu-img check's findings on
// stderr, without a program prefix), stdout flushed first so merged output keeps its order.
void install_message_sink();

}  // namespace qblock::tools
