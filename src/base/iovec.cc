// IoVec and AlignedBuffer (see include/qblock/iovec.h).
#include "qblock/iovec.h"

#include <new>

#include "base/check.h"

namespace qblock {

AlignedBuffer::AlignedBuffer(std::size_t size, std::size_t alignment) : size_(size) {
  std::size_t alloc = (size + alignment - 1) / alignment * alignment;
  if (alloc == 0) alloc = alignment;
  void* p = std::aligned_alloc(alignment, alloc);
  if (!p) throw std::bad_alloc();
  data_.reset(static_cast<uint8_t*>(p));
}

IoVec::IoVec(std::vector<iovec> segments) : segments_(std::move(segments)) {
  for (const iovec& v : segments_) size_ += v.iov_len;
}

void IoVec::append(void* base, std::size_t len) {
  if (len == 0) return;
  segments_.push_back(iovec{base, len});
  size_ += len;
}

void IoVec::append(const IoVec& other) {
  for (const iovec& v : other.segments_) append(v.iov_base, v.iov_len);
}

IoVec IoVec::slice(std::size_t offset, std::size_t len) const {
  CHECK(offset + len <= size_);
  IoVec out;
  for (const iovec& v : segments_) {
    if (len == 0) break;
    if (offset >= v.iov_len) {
      offset -= v.iov_len;
      continue;
    }
    std::size_t n = std::min(v.iov_len - offset, len);
    out.append(static_cast<uint8_t*>(v.iov_base) + offset, n);
    offset = 0;
    len -= n;
  }
  return out;
}

void IoVec::copy_from(std::size_t offset, const void* src, std::size_t len) {
  const auto* s = static_cast<const uint8_t*>(src);
  for (const iovec& v : slice(offset, len).segments_) {
    std::memcpy(v.iov_base, s, v.iov_len);
    s += v.iov_len;
  }
}

void IoVec::copy_to(std::size_t offset, void* dst, std::size_t len) const {
  auto* d = static_cast<uint8_t*>(dst);
  for (const iovec& v : slice(offset, len).segments_) {
    std::memcpy(d, v.iov_base, v.iov_len);
    d += v.iov_len;
  }
}

void IoVec::memset(std::size_t offset, uint8_t byte, std::size_t len) {
  for (const iovec& v : slice(offset, len).segments_) std::memset(v.iov_base, byte, v.iov_len);
}

bool IoVec::is_zero() const {
  for (const iovec& v : segments_) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    for (std::size_t i = 0; i < v.iov_len; ++i) {
      if (p[i]) return false;
    }
  }
  return true;
}

bool IoVec::is_aligned(std::size_t alignment) const {
  for (const iovec& v : segments_) {
    if (reinterpret_cast<uintptr_t>(v.iov_base) % alignment || v.iov_len % alignment) return false;
  }
  return true;
}

}  // namespace qblock
