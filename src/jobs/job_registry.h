// JobRegistry: the storage daemon's jobs by id. It owns them from creation until they reach
// the null status; query-jobs and query-block-jobs list them newest first, as QEMU does.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "jobs/job.h"

namespace qblock {

class JobRegistry {
 public:
  // Checks a new job id: "Invalid job ID ''" for an empty or otherwise invalid one (QEMU's
  // rule: a letter first, then letters, digits, '-', '.', '_'), "Job ID 'x' already in use".
  Status check_new_id(const std::string& id) const;
  // Takes ownership. REQUIRES: check_new_id(job->id()) succeeded.
  Job& add(std::unique_ptr<Job> job);
  // The job with `id`, or nullptr.
  Job* find(const std::string& id) const;
  // Destroys the job. REQUIRES: `job` is registered and its lifecycle has ended.
  void remove(const Job& job);
  // Newest first.
  std::vector<Job*> list() const;
  bool empty() const { return jobs_.empty(); }

 private:
  std::vector<std::unique_ptr<Job>> jobs_;  // oldest first
};

}  // namespace qblock
