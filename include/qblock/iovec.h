// IoVec: a scatter/gather list over memory the caller owns, plus AlignedBuffer, the owning
// buffer used for bounce and padding buffers (aligned for O_DIRECT).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
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

// A list of (base, length) segments. Does not own the memory it points at.
class IoVec {
 public:
  IoVec() = default;
  IoVec(void* base, std::size_t len) { append(base, len); }
  explicit IoVec(std::vector<iovec> segments);

  void append(void* base, std::size_t len);
  void append(const IoVec& other);

  std::size_t size() const { return size_; }  // total bytes
  const std::vector<iovec>& segments() const { return segments_; }
  const iovec* data() const { return segments_.data(); }
  unsigned count() const { return static_cast<unsigned>(segments_.size()); }

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
  std::vector<iovec> segments_;
  std::size_t size_ = 0;
};

}  // namespace qblock
