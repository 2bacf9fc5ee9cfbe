// JobRegistry (see job_registry.h).
#include "jobs/job_registry.h"

#include <algorithm>
#include <cctype>

namespace qblock {

namespace {

bool valid_id(const std::string& id) {
  if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0]))) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
  });
}

}  // namespace

Status JobRegistry::check_new_id(const std::string& id) const {
  if (!valid_id(id)) return fail(Error::with_message(EINVAL, "Invalid job ID '" + id + "'"));
  if (find(id) != nullptr) {
    return fail(Error::with_message(EEXIST, "Job ID '" + id + "' already in use"));
  }
  return ok();
}

Job& JobRegistry::add(std::unique_ptr<Job> job) {
  jobs_.push_back(std::move(job));
  return *jobs_.back();
}

Job* JobRegistry::find(const std::string& id) const {
  for (const auto& j : jobs_) {
    if (j->id() == id) return j.get();
  }
  return nullptr;
}

void JobRegistry::remove(const Job& job) {
  std::erase_if(jobs_, [&job](const std::unique_ptr<Job>& j) { return j.get() == &job; });
}

std::vector<Job*> JobRegistry::list() const {
  std::vector<Job*> out;
  for (auto it = jobs_.rbegin(); it != jobs_.rend(); ++it) out.push_back(it->get());
  return out;
}

}  // namespace qblock
