// IoVec and AlignedBuffer (see include/qblock/iovec.h).
#include "qblock/iovec.h"

#include <algorithm>
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

IoVec::IoVec(std::vector<iovec> segments) {
  if (segments.size() > kInlineSegments) {
    spill_ = std::move(segments);
    count_ = static_cast<unsigned>(spill_.size());
    for (const iovec& v : spill_) size_ += v.iov_len;
    return;
  }
  for (const iovec& v : segments) {
    inline_[count_++] = v;
    size_ += v.iov_len;
  }
}

IoVec::IoVec(IoVec&& other) noexcept
    : spill_(std::move(other.spill_)), count_(other.count_), size_(other.size_) {
  if (!spilled()) std::copy_n(other.inline_, count_, inline_);
  other.spill_.clear();
  other.count_ = 0;
  other.size_ = 0;
}

IoVec& IoVec::operator=(IoVec&& other) noexcept {
  if (this != &other) {
    spill_ = std::move(other.spill_);
    count_ = other.count_;
    size_ = other.size_;
    if (!spilled()) std::copy_n(other.inline_, count_, inline_);
    other.spill_.clear();
    other.count_ = 0;
    other.size_ = 0;
  }
  return *this;
}

void IoVec::append(void* base, std::size_t len) {
  if (len == 0) return;
  if (count_ < kInlineSegments) {
    inline_[count_] = iovec{base, len};
  } else {
    if (!spilled()) spill_.assign(inline_, inline_ + count_);
    spill_.push_back(iovec{base, len});
  }
  ++count_;
  size_ += len;
}

void IoVec::append(const IoVec& other) {
  for (const iovec& v : other.segments()) append(v.iov_base, v.iov_len);
}

IoVec IoVec::slice(std::size_t offset, std::size_t len) const {
  CHECK(offset + len <= size_);
  IoVec out;
  for (const iovec& v : segments()) {
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
  // Named: a temporary's segments() would dangle in the range-for.
  const IoVec part = slice(offset, len);
  for (const iovec& v : part.segments()) {
    std::memcpy(v.iov_base, s, v.iov_len);
    s += v.iov_len;
  }
}

void IoVec::copy_to(std::size_t offset, void* dst, std::size_t len) const {
  auto* d = static_cast<uint8_t*>(dst);
  const IoVec part = slice(offset, len);
  for (const iovec& v : part.segments()) {
    std::memcpy(d, v.iov_base, v.iov_len);
    d += v.iov_len;
  }
}

void IoVec::memset(std::size_t offset, uint8_t byte, std::size_t len) {
  const IoVec part = slice(offset, len);
  for (const iovec& v : part.segments()) std::memset(v.iov_base, byte, v.iov_len);
}

bool IoVec::is_zero() const {
  for (const iovec& v : segments()) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    for (std::size_t i = 0; i < v.iov_len; ++i) {
      if (p[i]) return false;
    }
  }
  return true;
}

bool IoVec::is_aligned(std::size_t alignment) const {
  for (const iovec& v : segments()) {
    if (reinterpret_cast<uintptr_t>(v.iov_base) % alignment || v.iov_len % alignment) return false;
  }
  return true;
}

}  // namespace qblock
