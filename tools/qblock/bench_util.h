// Pure helpers of `qblock bench` (tools/qblock/bench.cc): qemu_strtoul-style number parsing
// for -c/-d/--pattern/--flush-interval and the offset sequence with qblock's wrap-around
// (qemu-compat.md §4.3, §4.4). Header-only so that qblock_tests can test them without the CLI.
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace qblock::tools {

// Parses an unsigned integer the way qemu-img bench 7.2 does for -c, -d, --pattern and
// --flush-interval (qemu_strtoul, base 0): leading white space and a sign are accepted, "0x"
// means hex and a leading 0 octal, the whole text must be consumed. A negative value wraps
// around as strtoul does (so "-1" is huge and fails any range check, "-0" is 0). Returns
// nullopt for malformed text or overflow.
inline std::optional<uint64_t> parse_ulong(std::string_view text) {
  std::string s(text);
  const char* begin = s.c_str();
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(begin, &end, 0);
  if (end == begin || *end != '\0' || errno == ERANGE) return std::nullopt;
  return static_cast<uint64_t>(v);
}

// The offsets a bench run visits. qemu-img 7.2 wraps with `offset %= image_size`, which sends
// requests across the end of the image (qemu-compat.md §4.4); qblock wraps within
// `image_size - bufsize` rounded down to the step, so every request lies inside the image and
// keeps the phase (alignment) of the start offset.
class OffsetSequence {
 public:
  // REQUIRES: start + bufsize <= image_size.
  OffsetSequence(uint64_t start, uint64_t step, uint64_t bufsize, uint64_t image_size)
      : start_(start), offset_(start), step_(step) {
    uint64_t room = image_size - bufsize;
    limit_ = step ? room / step * step : 0;
  }

  // Returns the offset of the next request and advances.
  uint64_t next() {
    uint64_t current = offset_;
    offset_ += step_;
    // limit_ == 0: the image has no room for a second step, so every request goes to the
    // start offset (which is known to be in range).
    if (limit_ == 0) {
      offset_ = start_;
    } else if (offset_ >= limit_) {
      // limit_ is a multiple of the step: the offset keeps the start offset's phase.
      offset_ %= limit_;
    }
    return current;
  }

 private:
  uint64_t start_;
  uint64_t offset_;
  uint64_t step_;
  uint64_t limit_;  // offsets are kept below this (a multiple of step_), 0: no wrapping room
};

}  // namespace qblock::tools
