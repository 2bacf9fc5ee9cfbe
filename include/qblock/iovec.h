// IoVec: a scatter/gather list over memory the caller owns, plus AlignedBuffer, the owning
// buffer used for bounce and padding buffers (aligned for O_DIRECT).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <utility>
#include <vector>

namespace qblock {

// An owned, zero-initialisable buffer aligned to `alignment` bytes (power of two).
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // REQUIRES: alignment is a power of two.
  AlignedBuffer(std::size_t size, std::size_t alignment = 4096);
  AlignedBuffer(AlignedBuffer&&) noexcept = default;
  AlignedBuffer& operator=(AlignedBuffer&&) noexcept = default;

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  void fill(uint8_t byte) { std::memset(data_.get(), byte, size_); }

 private:
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint8_t, Free> data_;
  std::size_t size_ = 0;
};

// A list of (base, length) segments. Does not own the memory it points at. Up to
// kInlineSegments segments are kept inside the object, so building, copying and slicing the
// usual one- or two-segment lists of the data path does not touch the heap; longer lists
// spill to a vector.
class IoVec {
 public:
  static constexpr unsigned kInlineSegments = 4;

  IoVec() = default;
  IoVec(void* base, std::size_t len) { append(base, len); }
  explicit IoVec(std::vector<iovec> segments);
  IoVec(const IoVec&) = default;
  IoVec& operator=(const IoVec&) = default;
  // Leaves `other` empty.
  IoVec(IoVec&& other) noexcept;
  IoVec& operator=(IoVec&& other) noexcept;

  void append(void* base, std::size_t len);
  void append(const IoVec& other);

  std::size_t size() const { return size_; }  // total bytes
  std::span<const iovec> segments() const { return {data(), count_}; }
  const iovec* data() const { return spilled() ? spill_.data() : inline_; }
  unsigned count() const { return count_; }

  // The sub-list covering [offset, offset + len). REQUIRES: offset + len <= size().
  IoVec slice(std::size_t offset, std::size_t len) const;

  // Copies between the segments and flat memory, starting `offset` bytes into the list.
  void copy_from(std::size_t offset, const void* src, std::size_t len);
  void copy_to(std::size_t offset, void* dst, std::size_t len) const;
  void memset(std::size_t offset, uint8_t byte, std::size_t len);
  // True if every byte is zero.
  bool is_zero() const;
  // True if every segment's base and length are multiples of `alignment`.
  bool is_aligned(std::size_t alignment) const;

 private:
  // Invariant: the segments are in spill_ when it is non-empty (then spill_.size() ==
  // count_ > kInlineSegments), otherwise in inline_[0, count_).
  bool spilled() const { return !spill_.empty(); }

  iovec inline_[kInlineSegments];
  std::vector<iovec> spill_;
  unsigned count_ = 0;
  std::size_t size_ = 0;
};

}  // namespace qblock
