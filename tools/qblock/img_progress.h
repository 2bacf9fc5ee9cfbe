// qemu-img's progress lines for `qblock commit` and `qblock rebase` (qemu-compat.md §1.5):
// "    (P.PP/100%)\r", printed when the value moved by more than the minimum step, or is 0 or
// 100; "\n" at the end. Single precision, as 7.2 accumulates it.
#pragma once

#include <cstdio>

namespace qblock::tools {

class ImgProgress {
 public:
  // `min_skip`: the smallest change printed (commit 1, rebase 2).
  ImgProgress(bool enabled, float min_skip) : enabled_(enabled), min_skip_(min_skip) {}
  // Adds `delta` percent (clamped at 100).
  void add(float delta) { set(current_ + delta); }
  // Sets the value (clamped at 100) and prints it if it moved enough.
  void set(float value) {
    if (!enabled_) return;
    current_ = value > 100.0f ? 100.0f : value;
    if (current_ > last_ + min_skip_ || current_ < last_ - min_skip_ || current_ == 100.0f ||
        current_ == 0.0f) {
      last_ = current_;
      std::printf("    (%3.2f/100%%)\r", static_cast<double>(current_));
      std::fflush(stdout);
    }
  }
  void end() {
    if (enabled_) std::printf("\n");
  }

 private:
  bool enabled_;
  float min_skip_;
  float current_ = 0;
  float last_ = 0;
};

}  // namespace qblock::tools
