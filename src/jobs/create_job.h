// CreateJob: blockdev-create as a Job (QAPI type "create"). Its work is one coroutine that
// creates an image (a file, or a format written into an existing node); the job's lifecycle,
// events and verbs are the framework's (job.h). Progress is 0 of 1 until the work is done.
#pragma once

#include <functional>

#include "jobs/job.h"

namespace qblock {

class CreateJob : public Job {
 public:
  // `work` runs once when the job runs; its error's message becomes the job's error.
  CreateJob(EventLoop& loop, JobOptions options, JobListener& listener,
            std::function<Task<Status>()> work);

  const char* type() const override { return "create"; }
  uint64_t current_progress() const override { return done_ ? 1 : 0; }
  uint64_t total_progress() const override { return 1; }

 protected:
  Task<Status> run() override;

 private:
  std::function<Task<Status>()> work_;
  bool done_ = false;
};

}  // namespace qblock
