// Job (see job.h): the state machine as tables and the lifecycle around a job's run().
#include "jobs/job.h"

#include <algorithm>
#include <array>

#include "base/check.h"

namespace qblock {

namespace {

using S = JobStatus;
constexpr int idx(JobStatus s) { return static_cast<int>(s); }

// kTransitions[from][to]: the status changes QEMU 7.2's job layer makes (qapi/job.json
// describes each status and what follows it).
constexpr std::array<std::array<bool, kJobStatusCount>, kJobStatusCount> kTransitions = [] {
  std::array<std::array<bool, kJobStatusCount>, kJobStatusCount> t{};
  auto allow = [&t](JobStatus from, std::initializer_list<JobStatus> to) {
    for (JobStatus s : to) t[idx(from)][idx(s)] = true;
  };
  allow(S::kUndefined, {S::kCreated});
  allow(S::kCreated, {S::kRunning, S::kAborting, S::kNull});
  allow(S::kRunning, {S::kPaused, S::kReady, S::kWaiting, S::kAborting});
  allow(S::kPaused, {S::kRunning});
  allow(S::kReady, {S::kStandby, S::kWaiting, S::kAborting});
  allow(S::kStandby, {S::kReady});
  allow(S::kWaiting, {S::kPending, S::kAborting});
  allow(S::kPending, {S::kConcluded, S::kAborting});
  allow(S::kAborting, {S::kConcluded});
  allow(S::kConcluded, {S::kNull});
  return t;
}();

// kVerbs[verb][status]: the verbs each status accepts (observed on qemu-storage-daemon 7.2:
// e.g. "complete" in standby is accepted, "finalize" only in pending, "dismiss" only in
// concluded, "cancel" not in concluded).
constexpr std::array<std::array<bool, kJobStatusCount>, kJobVerbCount> kVerbs = [] {
  std::array<std::array<bool, kJobStatusCount>, kJobVerbCount> t{};
  auto allow = [&t](JobVerb verb, std::initializer_list<JobStatus> in) {
    for (JobStatus s : in) t[static_cast<int>(verb)][idx(s)] = true;
  };
  allow(JobVerb::kCancel, {S::kCreated, S::kRunning, S::kPaused, S::kReady, S::kStandby,
                           S::kWaiting, S::kPending, S::kAborting});
  allow(JobVerb::kPause, {S::kCreated, S::kRunning, S::kPaused, S::kReady, S::kStandby});
  allow(JobVerb::kResume, {S::kCreated, S::kRunning, S::kPaused, S::kReady, S::kStandby});
  allow(JobVerb::kSetSpeed, {S::kCreated, S::kRunning, S::kPaused, S::kReady, S::kStandby});
  allow(JobVerb::kComplete, {S::kReady, S::kStandby});
  allow(JobVerb::kFinalize, {S::kPending});
  allow(JobVerb::kDismiss, {S::kConcluded});
  return t;
}();

constexpr std::chrono::milliseconds kMaxThrottleSleep(100);

}  // namespace

const char* job_status_name(JobStatus status) {
  static constexpr std::array<const char*, kJobStatusCount> kNames = {
      "undefined", "created", "running",  "paused",    "ready", "standby",
      "waiting",   "pending", "aborting", "concluded", "null"};
  return kNames[idx(status)];
}

const char* job_verb_name(JobVerb verb) {
  static constexpr std::array<const char*, kJobVerbCount> kNames = {
      "cancel", "pause", "resume", "set-speed", "complete", "finalize", "dismiss"};
  return kNames[static_cast<int>(verb)];
}

bool job_transition_allowed(JobStatus from, JobStatus to) {
  return kTransitions[idx(from)][idx(to)];
}

bool job_verb_allowed(JobVerb verb, JobStatus status) {
  return kVerbs[static_cast<int>(verb)][idx(status)];
}

std::optional<OnError> parse_on_error(std::string_view text) {
  if (text == "report") return OnError::kReport;
  if (text == "ignore") return OnError::kIgnore;
  if (text == "stop") return OnError::kStop;
  if (text == "enospc") return OnError::kEnospc;
  return std::nullopt;
}

Job::Job(EventLoop& loop, JobOptions options, JobListener& listener)
    : loop_(loop), listener_(listener), options_(std::move(options)), wake_(loop) {
  rate_.set_speed(options_.speed);
}

Job::~Job() = default;

void Job::transition(JobStatus to) {
  CHECK(job_transition_allowed(status_, to));
  status_ = to;
  listener_.job_status_changed(*this);
}

void Job::start() {
  listener_.job_status_changed(*this);  // created
  transition(JobStatus::kRunning);
  busy_ = true;
  spawn(lifecycle());
}

Task<void> Job::lifecycle() {
  // The command that created the job replies before the job's own events.
  co_await loop_.yield();
  Task<Status> work = run();
  Status result = co_await std::move(work);
  busy_ = false;
  if (in_pause_) {
    // Cancelled while paused: back to where it was paused, then on.
    in_pause_ = false;
    transition(status_ == JobStatus::kStandby ? JobStatus::kReady : JobStatus::kRunning);
  }
  bool failed = cancelled_ || !result;
  if (!failed) {
    transition(JobStatus::kWaiting);
    transition(JobStatus::kPending);
    if (!options_.auto_finalize) {
      listener_.job_pending(*this);
      while (!finalize_requested_ && !cancelled_) co_await wake_.wait();
      failed = cancelled_;
    }
  }
  if (failed) {
    if (cancelled_) {
      error_ = "Operation canceled";
    } else if (error_.empty()) {
      error_ = result.error().message();
    }
    transition(JobStatus::kAborting);
    Task<void> undo = abort();
    co_await std::move(undo);
    if (cancelled_) {
      listener_.job_cancelled(*this);
    } else {
      listener_.job_completed(*this);
    }
  } else {
    Task<void> done = commit();
    co_await std::move(done);
    listener_.job_completed(*this);
  }
  transition(JobStatus::kConcluded);
  if (!options_.auto_dismiss) {
    while (!dismiss_requested_) co_await wake_.wait();
  }
  transition(JobStatus::kNull);
  // The listener may destroy the job: nothing of it is touched afterwards.
  listener_.job_finished(*this);
}

Status Job::check_verb(JobVerb verb) const {
  if (job_verb_allowed(verb, status_)) return ok();
  return fail(Error::with_message(
      EPERM, std::string("Job '") + id() + "' in state '" + job_status_name(status_) +
                 "' cannot accept command verb '" + job_verb_name(verb) + "'"));
}

Status Job::pause() {
  if (Status s = check_verb(JobVerb::kPause); !s) return s;
  if (pause_count_ > 0) return fail(Error::with_message(EPERM, "Job is already paused"));
  ++pause_count_;
  if (idle_ && !in_pause_) {
    // Nothing in progress: the job is paused at once.
    in_pause_ = true;
    transition(status_ == JobStatus::kReady ? JobStatus::kStandby : JobStatus::kPaused);
  }
  kick();
  return ok();
}

Status Job::resume() {
  if (Status s = check_verb(JobVerb::kResume); !s) return s;
  if (pause_count_ == 0) {
    return fail(Error::with_message(EPERM, "Can't resume a job that was not paused"));
  }
  pause_count_ = 0;
  io_failed_ = false;
  if (in_pause_) {
    in_pause_ = false;
    transition(status_ == JobStatus::kStandby ? JobStatus::kReady : JobStatus::kRunning);
  }
  rate_.set_speed(options_.speed);
  kick();
  return ok();
}

Status Job::cancel(bool force) {
  if (Status s = check_verb(JobVerb::kCancel); !s) return s;
  if (!force && ready() && do_soft_cancel()) {
    kick();
    return ok();
  }
  cancelled_ = true;
  force_cancel_ = force;
  do_cancel();
  kick();
  return ok();
}

Status Job::complete() {
  if (Status s = check_verb(JobVerb::kComplete); !s) return s;
  Status s = do_complete();
  kick();
  return s;
}

Status Job::do_complete() {
  return fail(Error::with_message(
      ENOTSUP, std::string("Job type ") + type() + " does not support completion"));
}

Status Job::finalize() {
  if (Status s = check_verb(JobVerb::kFinalize); !s) return s;
  finalize_requested_ = true;
  kick();
  return ok();
}

Status Job::dismiss() {
  if (Status s = check_verb(JobVerb::kDismiss); !s) return s;
  dismiss_requested_ = true;
  kick();
  return ok();
}

Status Job::set_speed(int64_t speed) {
  if (Status s = check_verb(JobVerb::kSetSpeed); !s) return s;
  if (speed < 0) {
    return fail(Error::with_message(EINVAL, "Parameter 'speed' expects a non-negative value"));
  }
  options_.speed = static_cast<uint64_t>(speed);
  rate_.set_speed(options_.speed);
  kick();
  return ok();
}

Task<bool> Job::pause_point() {
  if (pause_count_ > 0 && !cancelled_) {
    if (!in_pause_) {
      in_pause_ = true;
      transition(status_ == JobStatus::kReady ? JobStatus::kStandby : JobStatus::kPaused);
    }
    busy_ = false;
    while (pause_count_ > 0 && !cancelled_) co_await wake_.wait();
    busy_ = true;
  }
  co_return cancelled_;
}

Task<void> Job::throttle(uint64_t bytes) {
  std::chrono::nanoseconds wait = rate_.take(bytes, RateLimit::Clock::now());
  throttling_ = true;
  while (wait.count() > 0 && !cancelled_) {
    std::chrono::nanoseconds step = std::min<std::chrono::nanoseconds>(wait, kMaxThrottleSleep);
    Task<void> sleep = loop_.sleep_for(step);
    co_await std::move(sleep);
    wait -= step;
  }
  throttling_ = false;
}

Task<void> Job::idle_wait() {
  idle_ = true;
  busy_ = false;
  co_await wake_.wait();
  idle_ = false;
  busy_ = true;
}

void Job::set_ready() {
  transition(JobStatus::kReady);
  listener_.job_ready(*this);
}

void Job::report_io_error(bool is_read, OnError policy) {
  const char* action = "report";
  if (policy == OnError::kIgnore) action = "ignore";
  if (policy == OnError::kStop || policy == OnError::kEnospc) action = "stop";
  listener_.job_io_error(*this, is_read, action);
  if ((policy == OnError::kStop || policy == OnError::kEnospc) && pause_count_ == 0) {
    ++pause_count_;
    io_failed_ = true;
  }
}

}  // namespace qblock
