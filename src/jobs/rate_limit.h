// RateLimit: the token bucket behind block-job-set-speed. A job asks, before each chunk, how
// long to wait; the bucket refills at `speed` bytes per second and holds at most one slice
// (100 ms) of tokens, so a job that was idle does not burst past its speed afterwards.
#pragma once

#include <chrono>
#include <cstdint>

namespace qblock {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;

  // 0: unlimited. Takes effect for the next chunk.
  void set_speed(uint64_t bytes_per_second);
  uint64_t speed() const { return speed_; }

  // Takes `bytes` from the bucket at `now` and returns how long the caller must wait before
  // sending them (zero if the bucket had them). A chunk larger than the bucket is allowed:
  // the debt is paid by the wait.
  std::chrono::nanoseconds take(uint64_t bytes, Clock::time_point now);

 private:
  uint64_t speed_ = 0;
  double tokens_ = 0;  // may go negative: debt of a chunk already sent
  Clock::time_point last_{};
  bool started_ = false;
};

}  // namespace qblock
