// DirtyBitmap (see dirty_bitmap.h).
#include "block/dirty_bitmap.h"

#include <algorithm>
#include <bit>

namespace qblock {

DirtyBitmap::DirtyBitmap(uint64_t length, uint64_t granularity)
    : length_(length),
      granularity_(granularity),
      bits_((length + granularity - 1) / granularity),
      words_((bits_ + 63) / 64, 0) {}

void DirtyBitmap::set(uint64_t offset, uint64_t bytes) {
  if (bytes == 0 || offset >= length_) return;
  const uint64_t first = offset / granularity_;
  const uint64_t last = std::min(bits_, (offset + bytes + granularity_ - 1) / granularity_);
  for (uint64_t b = first; b < last; ++b) {
    if (!test(b)) {
      words_[b / 64] |= uint64_t{1} << (b % 64);
      ++count_;
    }
  }
}

void DirtyBitmap::reset(uint64_t offset, uint64_t bytes) {
  const uint64_t end = std::min(length_, offset + bytes);
  uint64_t first = (offset + granularity_ - 1) / granularity_;
  // The last granule may be short: covered when the range reaches the length.
  uint64_t last = end == length_ ? bits_ : end / granularity_;
  for (uint64_t b = first; b < last; ++b) {
    if (test(b)) {
      words_[b / 64] &= ~(uint64_t{1} << (b % 64));
      --count_;
    }
  }
}

std::optional<uint64_t> DirtyBitmap::find_set(uint64_t from_bit) const {
  for (uint64_t w = from_bit / 64; w < words_.size(); ++w) {
    uint64_t word = words_[w];
    if (w == from_bit / 64) word &= ~uint64_t{0} << (from_bit % 64);
    if (word != 0) {
      const uint64_t bit = w * 64 + static_cast<uint64_t>(std::countr_zero(word));
      if (bit < bits_) return bit;
      return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<std::pair<uint64_t, uint64_t>> DirtyBitmap::next_dirty(uint64_t from,
                                                                     uint64_t max_bytes) const {
  if (count_ == 0) return std::nullopt;
  std::optional<uint64_t> bit = find_set(std::min(from / granularity_, bits_));
  if (!bit) bit = find_set(0);
  if (!bit) return std::nullopt;
  const uint64_t max_bits = std::max<uint64_t>(1, max_bytes / granularity_);
  uint64_t end = *bit;
  while (end < bits_ && end - *bit < max_bits && test(end)) ++end;
  const uint64_t offset = *bit * granularity_;
  return std::make_pair(offset, std::min(length_, end * granularity_) - offset);
}

void DirtyBitmap::clear() {
  std::fill(words_.begin(), words_.end(), 0);
  count_ = 0;
}

void DirtyBitmap::merge(const DirtyBitmap& other) {
  if (other.granularity_ == granularity_ && other.bits_ == bits_) {
    count_ = 0;
    for (std::size_t w = 0; w < words_.size(); ++w) {
      words_[w] |= other.words_[w];
      count_ += static_cast<uint64_t>(std::popcount(words_[w]));
    }
    return;
  }
  for (uint64_t b = 0; b < other.bits_; ++b) {
    if (other.test(b)) set(b * other.granularity_, other.granularity_);
  }
}

void DirtyBitmap::resize(uint64_t length) {
  const uint64_t bits = (length + granularity_ - 1) / granularity_;
  for (uint64_t b = bits; b < bits_; ++b) {
    if (test(b)) {
      words_[b / 64] &= ~(uint64_t{1} << (b % 64));
      --count_;
    }
  }
  length_ = length;
  bits_ = bits;
  words_.resize((bits_ + 63) / 64, 0);
}

void DirtyBitmap::serialize(uint64_t first_byte, std::span<uint8_t> out) const {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const uint64_t byte = first_byte + i;
    const uint64_t word = byte / 8;
    out[i] = word < words_.size() ? static_cast<uint8_t>(words_[word] >> (byte % 8 * 8)) : 0;
  }
}

void DirtyBitmap::deserialize(uint64_t first_byte, std::span<const uint8_t> in) {
  for (std::size_t i = 0; i < in.size(); ++i) {
    const uint64_t byte = first_byte + i;
    for (uint64_t j = 0; j < 8 && in[i]; ++j) {
      const uint64_t b = byte * 8 + j;
      if (b >= bits_) return;
      if (((in[i] >> j) & 1) && !test(b)) {
        words_[b / 64] |= uint64_t{1} << (b % 64);
        ++count_;
      }
    }
  }
}

uint64_t DirtyBitmap::dirty_bytes() const {
  uint64_t bytes = count_ * granularity_;
  if (bits_ > 0 && test(bits_ - 1)) bytes -= bits_ * granularity_ - length_;
  return bytes;
}

}  // namespace qblock
