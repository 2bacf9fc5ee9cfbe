// Error formatting (see include/qblock/error.h).
#include "qblock/error.h"

#include <cstring>

namespace qblock {

std::string Error::errno_text() const { return std::strerror(errno_); }

std::string Error::message() const {
  if (verbatim_) return context_;
  if (context_.empty()) return errno_text();
  return context_ + ": " + errno_text();
}

Error Error::with_context(std::string_view outer) const {
  Error e = *this;
  if (verbatim_ || !context_.empty()) {
    e.context_ = std::string(outer) + ": " + context_;
  } else {
    e.context_ = std::string(outer);
  }
  return e;
}

}  // namespace qblock
