// RequestFlags::to_string (see include/qblock/request_flags.h).
#include "qblock/request_flags.h"

namespace qblock {

std::string RequestFlags::to_string() const {
  static constexpr struct {
    RequestFlag flag;
    const char* name;
  } kNames[] = {
      {RequestFlag::kCopyOnRead, "COPY_ON_READ"},
      {RequestFlag::kZeroWrite, "ZERO_WRITE"},
      {RequestFlag::kMayUnmap, "MAY_UNMAP"},
      {RequestFlag::kRegisteredBuf, "REGISTERED_BUF"},
      {RequestFlag::kFua, "FUA"},
      {RequestFlag::kWriteCompressed, "WRITE_COMPRESSED"},
      {RequestFlag::kWriteUnchanged, "WRITE_UNCHANGED"},
      {RequestFlag::kSerialising, "SERIALISING"},
      {RequestFlag::kNoFallback, "NO_FALLBACK"},
      {RequestFlag::kPrefetch, "PREFETCH"},
      {RequestFlag::kNoWait, "NO_WAIT"},
  };
  std::string out;
  for (const auto& n : kNames) {
    if (!has(n.flag)) continue;
    if (!out.empty()) out += '|';
    out += n.name;
  }
  return out.empty() ? "0" : out;
}

}  // namespace qblock
