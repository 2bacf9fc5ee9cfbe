// Error and Result: the one error value of qblock (an errno plus context) and the
// tl::expected-based result types every fallible function returns.
// Errors travel up explicitly; exceptions are not part of the error model.
#pragma once

#include <cerrno>
#include <string>
#include <string_view>
#include <tl/expected.hpp>
#include <utility>

namespace qblock {

// An errno value with a short human context ("read of 'x.img'").
// Cheap to move; copyable. errno 0 never occurs in an Error.
class Error {
 public:
  // REQUIRES: errnum > 0.
  Error(int errnum, std::string context) : errno_(errnum), context_(std::move(context)) {}

  static Error io(std::string context = {}) { return Error(EIO, std::move(context)); }
  static Error invalid(std::string context = {}) { return Error(EINVAL, std::move(context)); }
  static Error unsupported(std::string context = {}) { return Error(ENOTSUP, std::move(context)); }
  static Error busy(std::string context = {}) { return Error(EBUSY, std::move(context)); }
  static Error no_space(std::string context = {}) { return Error(ENOSPC, std::move(context)); }
  static Error corrupt(std::string context = {}) { return Error(EUCLEAN, std::move(context)); }
  static Error not_found(std::string context = {}) { return Error(ENOENT, std::move(context)); }
  static Error permission(std::string context = {}) { return Error(EPERM, std::move(context)); }
  // REQUIRES: e > 0 (a negative value is negated, as io_uring returns -errno).
  static Error from_errno(int e, std::string context = {}) {
    return Error(e < 0 ? -e : e, std::move(context));
  }

  int errnum() const { return errno_; }
  // The context alone, possibly empty.
  const std::string& context() const { return context_; }
  // strerror() text of the errno ("Input/output error").
  std::string errno_text() const;
  // "context: strerror" or just the strerror text when there is no context.
  std::string message() const;

  // Returns a copy whose context is "outer: inner" (or "outer" when inner is empty).
  Error with_context(std::string_view outer) const;

  // A message that replaces the strerror part entirely: message() returns `text` as it is.
  // Used where QEMU prints a specific sentence instead of "ctx: strerror".
  static Error with_message(int errnum, std::string text) {
    Error e(errnum, std::move(text));
    e.verbatim_ = true;
    return e;
  }

 private:
  int errno_;
  std::string context_;
  bool verbatim_ = false;  // true: context_ is the whole message
};

template <typename T>
using Result = tl::expected<T, Error>;
using Status = Result<void>;

// Shorthand for the error branch: `return fail(Error::io("x"));`.
inline tl::unexpected<Error> fail(Error e) { return tl::unexpected<Error>(std::move(e)); }

// The success value of a Status.
inline Status ok() { return {}; }

}  // namespace qblock
