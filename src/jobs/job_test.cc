// Tests of the job state machine (Job, JobRegistry, RateLimit) against what qemu-storage-daemon
// 7.2 answers and reports.
#include "jobs/job.h"

#include <gtest/gtest.h>

#include "jobs/job_registry.h"
#include "qblock/event_loop.h"

namespace qblock {
namespace {

// The verbs each status accepts, one string per verb over the statuses in QAPI order
// (undefined created running paused ready standby waiting pending aborting concluded null).
// Recorded from qemu-storage-daemon 7.2 for the statuses a mirror job can be held in
// (running, paused, ready, standby, pending, concluded); the transient ones (created,
// waiting, aborting) follow qapi/job.json.
const char* const kExpectedVerbs[kJobVerbCount] = {
    "01111111100",  // cancel
    "01111100000",  // pause
    "01111100000",  // resume
    "01111100000",  // set-speed
    "00001100000",  // complete
    "00000001000",  // finalize
    "00000000010",  // dismiss
};

TEST(JobStateMachine, EveryVerbInEveryStatus) {
  for (int v = 0; v < kJobVerbCount; ++v) {
    for (int s = 0; s < kJobStatusCount; ++s) {
      EXPECT_EQ(job_verb_allowed(static_cast<JobVerb>(v), static_cast<JobStatus>(s)),
                kExpectedVerbs[v][s] == '1')
          << job_verb_name(static_cast<JobVerb>(v)) << " in "
          << job_status_name(static_cast<JobStatus>(s));
    }
  }
}

TEST(JobStateMachine, Transitions) {
  EXPECT_TRUE(job_transition_allowed(JobStatus::kCreated, JobStatus::kRunning));
  EXPECT_TRUE(job_transition_allowed(JobStatus::kReady, JobStatus::kStandby));
  EXPECT_TRUE(job_transition_allowed(JobStatus::kPending, JobStatus::kConcluded));
  EXPECT_FALSE(job_transition_allowed(JobStatus::kPaused, JobStatus::kReady));
  EXPECT_FALSE(job_transition_allowed(JobStatus::kRunning, JobStatus::kConcluded));
  EXPECT_FALSE(job_transition_allowed(JobStatus::kNull, JobStatus::kCreated));
}

// Records the listener's calls as QMP would report them.
class Recorder : public JobListener {
 public:
  void job_status_changed(const Job& job) override {
    log += std::string(job_status_name(job.status())) + " ";
  }
  void job_ready(const Job&) override { log += "READY "; }
  void job_pending(const Job&) override { log += "PENDING "; }
  void job_completed(const Job& job) override {
    log += job.error().empty() ? "COMPLETED " : "COMPLETED(" + job.error() + ") ";
  }
  void job_cancelled(const Job&) override { log += "CANCELLED "; }
  void job_io_error(const Job&, bool, const std::string& action) override {
    log += "ERROR(" + action + ") ";
  }
  void job_finished(Job&) override {
    log += "finished";
    finished = true;
  }
  std::string log;
  bool finished = false;
};

// Goes ready at once and waits for complete or cancel, like a mirror of an empty disk.
class FakeJob : public Job {
 public:
  FakeJob(EventLoop& loop, JobOptions options, JobListener& listener)
      : Job(loop, std::move(options), listener) {}
  const char* type() const override { return "mirror"; }
  uint64_t current_progress() const override { return 0; }
  uint64_t total_progress() const override { return 0; }

 protected:
  Task<Status> run() override {
    if (co_await pause_point()) co_return ok();
    set_ready();
    while (!completing_) {
      Task<void> idle = idle_wait();
      co_await std::move(idle);
      if (co_await pause_point()) co_return ok();
    }
    co_return ok();
  }
  Status do_complete() override {
    completing_ = true;
    return ok();
  }
  bool do_soft_cancel() override {
    completing_ = true;
    return true;
  }
  void do_cancel() override {}

 private:
  bool completing_ = false;
};

void spin(EventLoop& loop) {
  for (int i = 0; i < 20; ++i) loop.run_once(false);
}

// A loop and a listener for one job.
class JobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<EventLoop>> loop = EventLoop::create();
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
  }
  // A FakeJob "j" with the given auto-finalize/auto-dismiss, started and spun until ready.
  std::unique_ptr<FakeJob> ready_job(bool auto_finalize, bool auto_dismiss) {
    auto job =
        std::make_unique<FakeJob>(*loop_, JobOptions{"j", auto_finalize, auto_dismiss, 0}, rec_);
    job->start();
    spin(*loop_);
    return job;
  }
  std::unique_ptr<EventLoop> loop_;
  Recorder rec_;
};

TEST_F(JobTest, CompleteWithManualFinalizeAndDismiss) {
  std::unique_ptr<FakeJob> job = ready_job(false, false);
  EXPECT_EQ(rec_.log, "created running ready READY ");
  EXPECT_EQ(job->check_verb(JobVerb::kFinalize).error().message(),
            "Job 'j' in state 'ready' cannot accept command verb 'finalize'");
  EXPECT_EQ(job->resume().error().message(), "Can't resume a job that was not paused");
  ASSERT_TRUE(job->pause());
  EXPECT_EQ(job->status(), JobStatus::kStandby);  // idle: paused at once
  EXPECT_EQ(job->pause().error().message(), "Job is already paused");
  ASSERT_TRUE(job->complete());
  spin(*loop_);
  EXPECT_EQ(job->status(), JobStatus::kStandby);  // completes only once resumed
  ASSERT_TRUE(job->resume());
  spin(*loop_);
  EXPECT_EQ(rec_.log, "created running ready READY standby ready waiting pending PENDING ");
  EXPECT_FALSE(job->complete());
  ASSERT_TRUE(job->finalize());
  spin(*loop_);
  EXPECT_EQ(job->status(), JobStatus::kConcluded);
  EXPECT_FALSE(job->cancel(true));
  ASSERT_TRUE(job->dismiss());
  spin(*loop_);
  EXPECT_TRUE(rec_.finished);
  EXPECT_EQ(rec_.log,
            "created running ready READY standby ready waiting pending PENDING COMPLETED "
            "concluded null finished");
}

TEST_F(JobTest, CancelWhileReadyAndForced) {
  std::unique_ptr<FakeJob> job = ready_job(true, true);
  ASSERT_TRUE(job->cancel(true));
  spin(*loop_);
  EXPECT_EQ(rec_.log, "created running ready READY aborting CANCELLED concluded null finished");
  EXPECT_EQ(job->error(), "Operation canceled");
}

TEST_F(JobTest, SoftCancelOfAReadyMirrorCompletes) {
  std::unique_ptr<FakeJob> job = ready_job(true, true);
  ASSERT_TRUE(job->cancel(false));
  spin(*loop_);
  EXPECT_EQ(rec_.log,
            "created running ready READY waiting pending COMPLETED concluded null finished");
}

TEST_F(JobTest, SetSpeed) {
  std::unique_ptr<FakeJob> job = ready_job(true, true);
  EXPECT_EQ(job->set_speed(-1).error().message(), "Parameter 'speed' expects a non-negative value");
  ASSERT_TRUE(job->set_speed(1000));
  EXPECT_EQ(job->speed(), 1000u);
  ASSERT_TRUE(job->cancel(true));
  spin(*loop_);
  EXPECT_TRUE(rec_.finished);
}

TEST(JobRegistry, IdsAndOrder) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  Recorder rec;
  JobRegistry reg;
  EXPECT_EQ(reg.check_new_id("").error().message(), "Invalid job ID ''");
  EXPECT_FALSE(reg.check_new_id("1a"));
  reg.add(std::make_unique<FakeJob>(**loop, JobOptions{"a", true, true, 0}, rec));
  reg.add(std::make_unique<FakeJob>(**loop, JobOptions{"b", true, true, 0}, rec));
  EXPECT_EQ(reg.check_new_id("a").error().message(), "Job ID 'a' already in use");
  ASSERT_EQ(reg.list().size(), 2u);
  EXPECT_EQ(reg.list()[0]->id(), "b");
  reg.remove(*reg.find("b"));
  EXPECT_EQ(reg.find("b"), nullptr);
  EXPECT_NE(reg.find("a"), nullptr);
}

TEST(RateLimit, TokenBucket) {
  RateLimit r;
  const auto t0 = RateLimit::Clock::now();
  EXPECT_EQ(r.take(1 << 30, t0).count(), 0);  // unlimited
  r.set_speed(1000000);                       // 1 MB/s: a 100 KB slice
  EXPECT_EQ(r.take(100000, t0).count(), 0);
  // The next 100 KB must wait 0.1 s.
  EXPECT_NEAR(std::chrono::duration<double>(r.take(100000, t0)).count(), 0.1, 1e-6);
  // After 0.2 s the debt is paid and a further slice is due at once.
  EXPECT_EQ(r.take(100000, t0 + std::chrono::milliseconds(200)).count(), 0);
}

}  // namespace
}  // namespace qblock
