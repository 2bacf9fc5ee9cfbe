// QMP input framing: splits the byte stream of a monitor connection into top-level JSON values
// and parses each (json_parser.h). Hostile input is bounded: a message larger than the size
// limit is dropped up to its end with one error, and framing always resynchronises at the end
// of the top-level value, so one bad message never affects the next.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qblock/block_node.h"
#include "qblock/error.h"

namespace qblock::qmp {

// The default bound on one message (QEMU bounds a token at 64 MiB; no QMP command needs more
// than a few KiB).
inline constexpr std::size_t kDefaultMaxMessageBytes = 8u << 20;

class JsonStream {
 public:
  explicit JsonStream(std::size_t max_message_bytes = kDefaultMaxMessageBytes)
      : max_bytes_(max_message_bytes) {}

  // Consumes `bytes` and returns the values completed by them, in order: a parsed value, or
  // an error (EINVAL, verbatim message as the monitor sends it: the parser's messages, "JSON
  // parse error, expecting value" for a stray '}' or ']', "JSON token size limit exceeded"
  // once for a message over the limit). A top-level number or keyword is complete only when
  // a delimiter follows it, as in QEMU.
  std::vector<Result<Options>> feed(std::string_view bytes);

 private:
  void finish(std::vector<Result<Options>>& out);
  void append(char c);

  std::size_t max_bytes_;
  std::string buffer_;      // the message so far
  std::size_t depth_ = 0;   // open '{' and '['
  char quote_ = 0;          // inside a string opened by this quote character
  bool escape_ = false;     // the previous character was a backslash inside a string
  bool in_word_ = false;    // a top-level number or keyword is being collected
  bool oversized_ = false;  // the current message passed the limit; its bytes are dropped
};

}  // namespace qblock::qmp
