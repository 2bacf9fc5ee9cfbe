// LiveCommitJob: an intermediate block-commit as a Job. The images from `top` down to (not
// including) `base` sit below the active layer, so no guest write reaches them: the job copies
// what they allocate into `base` (reopened read-write by the caller) and, when it is
// finalized, takes them out of the chain: `base` becomes the backing file of the image above
// `top`, in memory and in that image's header. It concludes without READY. (An active commit,
// where `top` is the active layer, is a MirrorJob of type "commit".)
#pragma once

#include <string>
#include <vector>

#include "jobs/buffer_pool.h"
#include "jobs/job.h"
#include "qblock/block_node.h"

namespace qblock {

struct LiveCommitOptions {
  JobOptions job;
  OnError on_error = OnError::kReport;
  // The backing file name recorded in the header of the image above `top`; empty: the base's
  // file name (as QEMU records it).
  std::string backing_file;
};

class LiveCommitJob : public Job {
 public:
  // REQUIRES: `top` is above's backing child, `base` is below `top` in the chain and writable;
  // all outlive the job.
  LiveCommitJob(EventLoop& loop, LiveCommitOptions options, JobListener& listener, BlockNode& above,
                BlockNode& top, BlockNode& base);

  const char* type() const override { return "commit"; }
  // As QEMU counts: the whole length of the top, whether allocated or not.
  uint64_t current_progress() const override { return done_bytes_; }
  uint64_t total_progress() const override { return length_; }
  BlockNode& top() const { return top_; }
  BlockNode& base() const { return base_; }

 protected:
  Task<Status> run() override;
  Task<void> commit() override;

 private:
  LiveCommitOptions options_;
  BlockNode& above_;
  BlockNode& top_;
  BlockNode& base_;
  uint64_t length_;
  BufferPool buffers_{kCopyBufferBytes};
  uint64_t done_bytes_ = 0;
};

// Records `backing_file`/`backing_format` in the header of `node`'s image. A read-only node
// (an image below the active layer) is opened again read-write, without its backing chain,
// for the one header write. Errors: the open's, change_backing_file's.
[[nodiscard]] Task<Status> record_backing_file(BlockNode& node, std::string backing_file,
                                               std::string backing_format);

}  // namespace qblock
