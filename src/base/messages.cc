// The message sink (qblock/messages.h): a process-wide std::function behind a mutex. Messages
// are rare (corruption events, check diagnostics, breakpoints), so a lock per message is
// cheap; the sink runs outside the lock so it may itself emit or replace the sink.
#include "qblock/messages.h"

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace qblock {

namespace {

std::mutex sink_mu;
std::shared_ptr<const MessageSink> current_sink;  // null: print_message; guarded by sink_mu
// discard_messages() is in force (then current_sink drops everything). Written under sink_mu;
// read without it, so that emitters can test it for nothing.
std::atomic<bool> discarding{false};

void drop_message(MessageLevel, std::string_view) {}

}  // namespace

MessageSink set_message_sink(MessageSink sink) {
  std::shared_ptr<const MessageSink> next;
  if (sink) next = std::make_shared<const MessageSink>(std::move(sink));
  std::lock_guard<std::mutex> lock(sink_mu);
  std::shared_ptr<const MessageSink> previous = std::exchange(current_sink, std::move(next));
  discarding.store(false, std::memory_order_relaxed);
  return previous ? *previous : MessageSink();
}

MessageSink discard_messages() {
  auto next = std::make_shared<const MessageSink>(&drop_message);
  std::lock_guard<std::mutex> lock(sink_mu);
  std::shared_ptr<const MessageSink> previous = std::exchange(current_sink, std::move(next));
  discarding.store(true, std::memory_order_relaxed);
  return previous ? *previous : MessageSink();
}

bool messages_discarded() { return discarding.load(std::memory_order_relaxed); }

void print_message(MessageLevel level, std::string_view text) {
  std::string line(text);
  line += '\n';
  if (level == MessageLevel::kInfo) {
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  // One fputs per line, after flushing stdout, so merged output keeps its order.
  std::fflush(stdout);
  std::fputs(line.c_str(), stderr);
}

void emit_message(MessageLevel level, std::string_view text) {
  if (messages_discarded()) return;
  std::shared_ptr<const MessageSink> sink;
  {
    std::lock_guard<std::mutex> lock(sink_mu);
    sink = current_sink;
  }
  if (sink) {
    (*sink)(level, text);
  } else {
    print_message(level, text);
  }
}

}  // namespace qblock
