// Reading metadata past the end of the file (see metadata_read.h).
#include "block/formats/qcow2/metadata_read.h"

#include <algorithm>

namespace qblock::qcow2 {

Task<Status> read_zero_padded(BlockNode& file, uint64_t offset, std::vector<uint8_t>& buf) {
  std::fill(buf.begin(), buf.end(), 0);
  const uint64_t length = file.length();
  if (offset >= length || buf.empty()) co_return ok();
  const uint64_t n = std::min<uint64_t>(buf.size(), length - offset);
  co_return co_await file.read(offset, IoVec(buf.data(), n));
}

}  // namespace qblock::qcow2
