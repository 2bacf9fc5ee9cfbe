// Key material (secret values, passphrases, master keys): a byte buffer that is wiped when it
// is destroyed or reassigned, never printed. Copies are explicit (clone()) so that key bytes
// are not duplicated by accident.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace qblock {

class SecretBytes {
 public:
  SecretBytes() = default;
  explicit SecretBytes(std::size_t n) : bytes_(n, 0) {}
  SecretBytes(const uint8_t* data, std::size_t n) : bytes_(data, data + n) {}
  explicit SecretBytes(std::string_view text)
      : bytes_(reinterpret_cast<const uint8_t*>(text.data()),
               reinterpret_cast<const uint8_t*>(text.data()) + text.size()) {}
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
    other.bytes_.clear();
  }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      bytes_ = std::move(other.bytes_);
      other.bytes_.clear();
    }
    return *this;
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  ~SecretBytes() { wipe(); }

  // An explicit copy.
  SecretBytes clone() const { return SecretBytes(bytes_.data(), bytes_.size()); }

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  std::size_t size() const { return bytes_.size(); }
  bool empty() const { return bytes_.empty(); }
  // Shrinks to `n` bytes (n <= size()); the dropped tail is wiped first.
  void truncate(std::size_t n) {
    if (n >= bytes_.size()) return;
    volatile_zero(bytes_.data() + n, bytes_.size() - n);
    bytes_.resize(n);
  }
  bool operator==(const SecretBytes& other) const { return bytes_ == other.bytes_; }

 private:
  // Zeroes through a volatile pointer so the compiler cannot drop the stores (the header
  // stays free of platform headers; explicit_bzero is what this does).
  static void volatile_zero(uint8_t* p, std::size_t n) {
    volatile uint8_t* v = p;
    for (std::size_t i = 0; i < n; ++i) v[i] = 0;
  }
  void wipe() {
    // The whole capacity: a shrink may have left key bytes past size().
    volatile_zero(bytes_.data(), bytes_.capacity());
    bytes_.clear();
  }

  std::vector<uint8_t> bytes_;
};

}  // namespace qblock
