// QMP input framing; see json_stream.h.
#include "qmp/json_stream.h"

#include "qmp/json_parser.h"

namespace qblock::qmp {

void JsonStream::append(char c) {
  if (oversized_) return;
  if (buffer_.size() >= max_bytes_) {
    oversized_ = true;
    buffer_.clear();
    buffer_.shrink_to_fit();
    return;
  }
  buffer_ += c;
}

void JsonStream::finish(std::vector<Result<Options>>& out) {
  if (oversized_) {
    out.push_back(fail(Error::with_message(EINVAL, "JSON token size limit exceeded")));
  } else {
    out.push_back(parse_qmp_json(buffer_));
  }
  buffer_.clear();
  oversized_ = false;
  in_word_ = false;
}

std::vector<Result<Options>> JsonStream::feed(std::string_view bytes) {
  std::vector<Result<Options>> out;
  for (const char c : bytes) {
    if (quote_ != 0) {  // inside a string
      append(c);
      if (escape_) {
        escape_ = false;
      } else if (c == '\\') {
        escape_ = true;
      } else if (c == quote_) {
        quote_ = 0;
        if (depth_ == 0) finish(out);
      }
      continue;
    }
    const bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r';
    if (in_word_) {
      // A top-level scalar ends at the first character that cannot continue it.
      const bool word_char = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                             (c >= 'A' && c <= 'Z') || c == '.' || c == '+' || c == '-';
      if (word_char) {
        append(c);
        continue;
      }
      finish(out);
    }
    switch (c) {
      case '{':
      case '[':
        if (depth_ + 1 > kMaxJsonNesting) {
          // As QEMU: the message so far is dropped and what follows is read afresh.
          out.push_back(fail(Error::with_message(EINVAL, "JSON nesting depth limit exceeded")));
          buffer_.clear();
          oversized_ = false;
          depth_ = 0;
          break;
        }
        ++depth_;
        append(c);
        break;
      case '}':
      case ']':
        if (depth_ == 0) {
          out.push_back(fail(Error::with_message(EINVAL, "JSON parse error, expecting value")));
          break;
        }
        append(c);
        if (--depth_ == 0) finish(out);
        break;
      case '"':
      case '\'':
        quote_ = c;
        append(c);
        break;
      default:
        if (depth_ > 0) {
          append(c);
        } else if (!space) {
          in_word_ = true;
          append(c);
        }
        break;
    }
  }
  return out;
}

}  // namespace qblock::qmp
