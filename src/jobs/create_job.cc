// CreateJob (see create_job.h).
#include "jobs/create_job.h"

namespace qblock {

CreateJob::CreateJob(EventLoop& loop, JobOptions options, JobListener& listener,
                     std::function<Task<Status>()> work)
    : Job(loop, std::move(options), listener), work_(std::move(work)) {}

Task<Status> CreateJob::run() {
  Task<Status> work = work_();
  Status s = co_await std::move(work);
  done_ = true;
  co_return s;
}

}  // namespace qblock
