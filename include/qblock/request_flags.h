// RequestFlags: the per-request flag set of the block layer (block-semantics.md §1.1).
// Values match QEMU's BdrvRequestFlags so traces compare easily.
#pragma once

#include <cstdint>
#include <string>

namespace qblock {

enum class RequestFlag : uint32_t {
  kCopyOnRead = 0x1,
  kZeroWrite = 0x2,  // write-zeroes: no data buffer
  kMayUnmap = 0x4,   // zeroed range may be deallocated as long as it reads as zero
  kRegisteredBuf = 0x8,
  kFua = 0x10,  // data stable on completion (emulated by a flush if unsupported)
  kWriteCompressed = 0x20,
  kWriteUnchanged = 0x40,
  kSerialising = 0x80,  // no overlapping request runs concurrently on this node
  kNoFallback = 0x100,  // write-zeroes only if efficient, else ENOTSUP
  kPrefetch = 0x200,
  kNoWait = 0x400,  // with kSerialising: EBUSY instead of waiting for an overlap
};

// A bit set of RequestFlag. Cheap value type.
class RequestFlags {
 public:
  constexpr RequestFlags() = default;
  constexpr RequestFlags(RequestFlag f) : bits_(static_cast<uint32_t>(f)) {}  // NOLINT
  static constexpr RequestFlags from_bits(uint32_t bits) {
    RequestFlags f;
    f.bits_ = bits;
    return f;
  }
  constexpr uint32_t bits() const { return bits_; }
  constexpr bool has(RequestFlag f) const { return bits_ & static_cast<uint32_t>(f); }
  // True if every flag of `other` is set here.
  constexpr bool has_all(RequestFlags other) const { return (bits_ & other.bits_) == other.bits_; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr RequestFlags operator|(RequestFlags o) const { return from_bits(bits_ | o.bits_); }
  constexpr RequestFlags operator&(RequestFlags o) const { return from_bits(bits_ & o.bits_); }
  constexpr RequestFlags without(RequestFlags o) const { return from_bits(bits_ & ~o.bits_); }
  constexpr RequestFlags& operator|=(RequestFlags o) {
    bits_ |= o.bits_;
    return *this;
  }
  constexpr bool operator==(const RequestFlags&) const = default;

  // "FUA|NO_FALLBACK" style text for logs and test failures.
  std::string to_string() const;

 private:
  uint32_t bits_ = 0;
};

constexpr RequestFlags operator|(RequestFlag a, RequestFlag b) {
  return RequestFlags(a) | RequestFlags(b);
}

// block-semantics.md §1.2: zero efficiently or ENOTSUP; serialising; EBUSY instead of waiting.
inline constexpr RequestFlags kAllocate =
    RequestFlag::kNoFallback | RequestFlag::kSerialising | RequestFlags(RequestFlag::kNoWait);

}  // namespace qblock
