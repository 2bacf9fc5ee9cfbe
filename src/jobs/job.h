// Job: the base of the storage daemon's long-running jobs (mirror, and later commit and
// backup), with QEMU 7.2's job state machine: the statuses, which status may follow which, and
// which user verb (job-pause, job-cancel, ...) a status accepts, all as data. The job's work is
// a coroutine (run()) on the daemon's loop; the base drives the lifecycle around it
// (created -> running -> waiting -> pending -> concluded -> null, or -> aborting -> concluded),
// pauses it at its pause points, rate-limits it, and reports every change to a JobListener so
// that this layer does not depend on QMP (docs/architecture.md, "Jobs").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "jobs/rate_limit.h"
#include "qblock/error.h"
#include "qblock/event_loop.h"
#include "qblock/sync.h"
#include "qblock/task.h"

namespace qblock {

// QEMU's JobStatus, in QAPI order.
enum class JobStatus {
  kUndefined,
  kCreated,
  kRunning,
  kPaused,
  kReady,
  kStandby,
  kWaiting,
  kPending,
  kAborting,
  kConcluded,
  kNull,
};
inline constexpr int kJobStatusCount = 11;

// QEMU's JobVerb: the user commands checked against the status.
enum class JobVerb { kCancel, kPause, kResume, kSetSpeed, kComplete, kFinalize, kDismiss };
inline constexpr int kJobVerbCount = 7;

// QAPI names: "running", "standby", ...; "cancel", "set-speed", ...
const char* job_status_name(JobStatus status);
const char* job_verb_name(JobVerb verb);
// True if a job in `from` may move to `to`.
bool job_transition_allowed(JobStatus from, JobStatus to);
// True if a job in `status` accepts `verb`.
bool job_verb_allowed(JobVerb verb, JobStatus status);

class Job;

// Receives a job's reports; the storage daemon turns them into QMP events. Called on the
// loop, synchronously from the state change (a listener must not destroy the job).
class JobListener {
 public:
  virtual ~JobListener() = default;
  // Every status change (JOB_STATUS_CHANGE).
  virtual void job_status_changed(const Job& job) = 0;
  // The job became ready (BLOCK_JOB_READY).
  virtual void job_ready(const Job& job) = 0;
  // The job waits for job-finalize (BLOCK_JOB_PENDING; only without auto-finalize).
  virtual void job_pending(const Job& job) = 0;
  // The job ended: completed (maybe with job.error()), or cancelled (BLOCK_JOB_COMPLETED /
  // BLOCK_JOB_CANCELLED).
  virtual void job_completed(const Job& job) = 0;
  virtual void job_cancelled(const Job& job) = 0;
  // An I/O error met with policy `action` ("report", "ignore", "stop") (BLOCK_JOB_ERROR).
  virtual void job_io_error(const Job& job, bool is_read, const std::string& action) = 0;
  // The job reached null and may be destroyed (after the call returns).
  virtual void job_finished(Job& job) = 0;
};

// What a job does on an I/O error (QEMU's BlockdevOnError).
enum class OnError { kReport, kIgnore, kStop, kEnospc };
// "report", "ignore", "stop", "enospc"; nullopt for anything else.
std::optional<OnError> parse_on_error(std::string_view text);

struct JobOptions {
  std::string id;
  bool auto_finalize = true;
  bool auto_dismiss = true;
  uint64_t speed = 0;  // bytes per second; 0: unlimited
};

class Job {
 public:
  Job(EventLoop& loop, JobOptions options, JobListener& listener);
  virtual ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const std::string& id() const { return options_.id; }
  // The QAPI job type ("mirror").
  virtual const char* type() const = 0;
  JobStatus status() const { return status_; }
  bool auto_finalize() const { return options_.auto_finalize; }
  bool auto_dismiss() const { return options_.auto_dismiss; }
  uint64_t speed() const { return options_.speed; }
  // Progress (query-jobs current-progress / total-progress; the block job's offset / len).
  virtual uint64_t current_progress() const = 0;
  virtual uint64_t total_progress() const = 0;
  bool paused() const { return pause_count_ > 0; }
  // Running a chunk of work now (not paused, not idle, not waiting for the user).
  bool busy() const { return busy_; }
  // Sleeping in throttle() (the speed limit).
  bool throttling() const { return throttling_; }
  // Whether a cancel ends the job before job-cancel replies when it sleeps in throttle(), as
  // QEMU's backup does (its copy is woken from the rate limit and finishes at once); a QEMU
  // mirror sleeps on and gets the reply first. Default false.
  virtual bool cancel_wakes_throttle() const { return false; }
  bool ready() const { return status_ == JobStatus::kReady || status_ == JobStatus::kStandby; }
  // Why the job failed or "Operation canceled"; empty if it succeeded (so far).
  const std::string& error() const { return error_; }
  bool cancelled() const { return cancelled_; }
  // "ok", or "failed" while the job is stopped by an I/O error (until job-resume).
  const char* io_status() const { return io_failed_ ? "failed" : "ok"; }

  // Runs the lifecycle: created -> running -> ... -> null. Spawned by the owner; when it
  // ends, listener.job_finished() has been called.
  void start();

  // ---- the user verbs; each fails with QEMU's message ----
  Status pause();
  Status resume();
  // `force`: false is block-job-cancel's default (a ready mirror then completes without
  // pivoting); job-cancel always forces.
  Status cancel(bool force);
  Status complete();
  Status finalize();
  Status dismiss();
  Status set_speed(int64_t speed);
  // "Job 'x' in state 'y' cannot accept command verb 'z'" unless `verb` is allowed now.
  Status check_verb(JobVerb verb) const;

 protected:
  // The job's work. Returns when it is done (success) or failed or was cancelled; call
  // pause_point() between chunks and throttle() per chunk. A failure's message becomes
  // error().
  virtual Task<Status> run() = 0;
  // job-complete (REQUIRES: ready). Default: ENOTSUP.
  virtual Status do_complete();
  // Called once the job is cancelled, to wake the work where it waits.
  virtual void do_cancel() {}
  // A cancel without force of a ready job: returns true if the job handles it as a way of
  // finishing (a mirror completes without pivoting); default false (an ordinary cancel).
  virtual bool do_soft_cancel() { return false; }
  // After run(): commit on success (job-finalize time), abort on failure or cancel.
  virtual Task<void> commit() { co_return; }
  virtual Task<void> abort() { co_return; }

  // Between chunks: honours pause (paused/standby until resumed) and returns true if the job
  // should stop (cancelled).
  Task<bool> pause_point();
  // Before a chunk of `bytes`: waits as the speed demands. Returns early on cancel.
  Task<void> throttle(uint64_t bytes);
  // Waits for kick() (new work, a verb), marking the job idle (not busy) meanwhile.
  Task<void> idle_wait();
  void kick() { wake_.wake_all(); }
  // running -> ready, reporting BLOCK_JOB_READY.
  void set_ready();
  // Reports an I/O error with the policy's action.
  void report_io_error(bool is_read, OnError policy);
  bool should_stop() const { return cancelled_; }

  EventLoop& loop_;
  JobListener& listener_;

 private:
  Task<void> lifecycle();
  void transition(JobStatus to);

  JobOptions options_;
  JobStatus status_ = JobStatus::kCreated;
  int pause_count_ = 0;
  bool in_pause_ = false;  // parked in paused/standby
  bool idle_ = false;      // in idle_wait()
  bool busy_ = false;
  bool throttling_ = false;
  bool cancelled_ = false;
  bool force_cancel_ = false;
  bool finalize_requested_ = false;
  bool dismiss_requested_ = false;
  bool io_failed_ = false;
  std::string error_;
  RateLimit rate_;
  WaitQueue wake_;
};

}  // namespace qblock
