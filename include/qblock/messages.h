// Messages: the few lines the library itself reports (qcow2 corruption events, qemu-img
// check diagnostics, blkdebug breakpoints, fatal event-loop errors) go through one sink that
// the embedding program may replace. The default sink prints them as qblock always has:
// kInfo lines on stdout, kWarning and kError lines on stderr after flushing stdout, so that
// output merged from both streams keeps its order.
#pragma once

#include <functional>
#include <string_view>

namespace qblock {

enum class MessageLevel : unsigned char {
  kInfo,     // progress a tool would show (blkdebug: "Suspended request 'tag'")
  kWarning,  // something is wrong but the operation goes on (a non-fatal corruption)
  kError,    // an operation failed or the image was marked corrupt
  // An error the program reports under its own name, as QEMU's error_report does
  // ("qemu-img: TEXT"); printed as kError by a sink that does not know the name.
  kReport,
};

// Receives one message: a single line of text without its trailing newline. Called on the
// thread that emits it (any event-loop thread), possibly from several threads at once.
using MessageSink = std::function<void(MessageLevel level, std::string_view text)>;

// Installs `sink` for every later message and returns the previous sink; an empty function
// restores the default. Thread-safe; a message being delivered meanwhile goes to either sink.
// Ends discard_messages().
MessageSink set_message_sink(MessageSink sink);

// Drops every later message, and spares the library formatting them (a damaged image can
// make a check report millions of lines: a fuzzer or a bulk scan that does not read them
// should not pay for them). Returns the previous sink; set_message_sink() ends it (given the
// sink this returns, too). Thread-safe.
MessageSink discard_messages();

// True while discard_messages() is in force: emitters may skip building their text.
bool messages_discarded();

// What the default sink does: kInfo to stdout (then flushed), kWarning/kError to stderr after
// std::fflush(stdout). Embedders can call it from their own sink to keep that behaviour.
void print_message(MessageLevel level, std::string_view text);

// Sends one message to the current sink. The library and drivers call this instead of
// printing. REQUIRES: `text` has no trailing newline.
void emit_message(MessageLevel level, std::string_view text);

}  // namespace qblock
