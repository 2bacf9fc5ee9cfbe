// RateLimit (see rate_limit.h).
#include "jobs/rate_limit.h"

#include <algorithm>

namespace qblock {

namespace {
constexpr double kSliceSeconds = 0.1;
}

void RateLimit::set_speed(uint64_t bytes_per_second) {
  speed_ = bytes_per_second;
  started_ = false;
}

std::chrono::nanoseconds RateLimit::take(uint64_t bytes, Clock::time_point now) {
  if (speed_ == 0) return std::chrono::nanoseconds(0);
  const double capacity = static_cast<double>(speed_) * kSliceSeconds;
  if (!started_) {
    started_ = true;
    tokens_ = capacity;
    last_ = now;
  }
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  tokens_ = std::min(capacity, tokens_ + elapsed * static_cast<double>(speed_));
  tokens_ -= static_cast<double>(bytes);
  if (tokens_ >= 0) return std::chrono::nanoseconds(0);
  const double wait = -tokens_ / static_cast<double>(speed_);
  return std::chrono::nanoseconds(static_cast<int64_t>(wait * 1e9));
}

}  // namespace qblock
