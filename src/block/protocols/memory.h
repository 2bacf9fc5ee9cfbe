// The memory protocol: an image held in RAM, for tests. It can imitate device limits
// (request alignment, max transfer), optionally zero efficiently, and records every request
// it receives so tests can assert on the I/O a path sends.
#pragma once

#include <vector>

#include "block/driver.h"

namespace qblock {

// One request as the memory node received it.
struct RecordedRequest {
  enum class Kind { kRead, kWrite, kWriteZeroes, kDiscard, kFlush, kTruncate };
  Kind kind;
  uint64_t offset;
  uint64_t bytes;
  RequestFlags flags;
  bool operator==(const RecordedRequest&) const = default;
};

class MemoryNode : public BlockNode {
 public:
  struct Config {
    uint64_t size = 0;
    uint32_t request_alignment = 1;
    uint64_t max_transfer = 0;
    bool efficient_zeroes = false;  // advertise MAY_UNMAP|NO_FALLBACK and zero in place
    bool fua = false;               // advertise FUA for writes
    bool async = false;             // complete every request from the loop (after a yield)
  };
  MemoryNode(EventLoop& loop, Config config);

  uint64_t length() const override { return data_.size(); }
  const std::vector<uint8_t>& data() const { return data_; }
  std::vector<uint8_t>& data() { return data_; }
  const std::vector<RecordedRequest>& log() const { return log_; }
  void clear_log() { log_.clear(); }
  // The most data writes that were in flight at once (with `async`, a write stays in flight
  // across one loop iteration), and a reset of that count.
  unsigned max_concurrent_writes() const { return max_concurrent_writes_; }
  void reset_max_concurrent_writes() { max_concurrent_writes_ = 0; }

 protected:
  Task<Status> do_read(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write(uint64_t offset, IoVec qiov, RequestFlags flags) override;
  Task<Status> do_write_zeroes(uint64_t offset, uint64_t bytes, RequestFlags flags) override;
  Task<Status> do_discard(uint64_t offset, uint64_t bytes) override;
  Task<Status> do_flush() override;
  Task<Status> do_truncate(uint64_t size, PreallocMode mode, Exact exact) override;

 private:
  std::vector<uint8_t> data_;
  std::vector<RecordedRequest> log_;
  bool efficient_zeroes_ = false;
  bool async_ = false;
  unsigned writes_in_flight_ = 0;
  unsigned max_concurrent_writes_ = 0;
  Task<void> maybe_yield();
};

// Options: size, request-alignment, max-transfer, efficient-zeroes, fua, async, and image (a file
// whose bytes are the initial contents).
Task<Result<NodePtr>> open_memory_node(OpenContext& ctx, Options& options);

}  // namespace qblock
