// EventLoop operations beyond plain reads and writes: sockets, timers, fsync and batching.
#include "qblock/event_loop.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>

#include "qblock/driver/uring.h"

namespace qblock {
namespace {

Task<int> echo_over_socketpair(EventLoop& loop, int a, int b) {
  const char msg[] = "ping";
  int sent = co_await uring::send(loop, a, msg, sizeof(msg));
  if (sent != sizeof(msg)) co_return -1;
  char buf[16] = {};
  int got = co_await uring::recv(loop, b, buf, sizeof(buf));
  co_return got == sizeof(msg) && std::strcmp(buf, "ping") == 0 ? 1 : 0;
}

TEST(EventLoop, SendAndRecvOnSockets) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  EXPECT_EQ(run_sync(**loop, echo_over_socketpair(**loop, fds[0], fds[1])), 1);
  close(fds[0]);
  close(fds[1]);
}

Task<int64_t> timed_sleep(EventLoop& loop) {
  auto start = std::chrono::steady_clock::now();
  co_await uring::sleep(loop, std::chrono::milliseconds(30));
  co_return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start)
      .count();
}

TEST(EventLoop, TimersWaitAtLeastTheirDuration) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EXPECT_GE(run_sync(**loop, timed_sleep(**loop)), 29);
}

Task<int64_t> short_sleeps(EventLoop& loop, int count) {
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < count; ++i) co_await uring::sleep(loop, std::chrono::microseconds(200));
  co_return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  start)
      .count();
}

// With busy polling the loop spins instead of sleeping while completions come soon, but it
// still waits for them (no early resumption) and goes back to sleeping when they stop coming.
TEST(EventLoop, BusyPollingKeepsTimingAndStopsWhenIdle) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  (*loop)->set_busy_poll(std::chrono::milliseconds(1));
  EXPECT_GE(run_sync(**loop, short_sleeps(**loop, 50)), 50 * 200);
  // A long idle wait afterwards: the loop must sleep through it, not burn the CPU.
  const clock_t cpu_before = clock();
  EXPECT_GE(run_sync(**loop, timed_sleep(**loop)), 29);
  const double cpu_ms = 1000.0 * static_cast<double>(clock() - cpu_before) / CLOCKS_PER_SEC;
  EXPECT_LT(cpu_ms, 15.0);  // at most a poll window or two of spinning out of 30 ms
}

Task<int> many_nops(EventLoop& loop, int count) {
  int ok = 0;
  for (int i = 0; i < count; ++i) {
    int r = co_await uring::nop(loop);
    ok += r == 0;
  }
  co_return ok;
}

Task<int> nop_once(EventLoop& loop) { co_return co_await uring::nop(loop); }

Task<int> parallel_nops(EventLoop& loop, int count) {
  std::vector<Task<int>> tasks;
  for (int i = 0; i < count; ++i) tasks.push_back(nop_once(loop));
  std::vector<int> results = co_await when_all(std::move(tasks));
  int ok = 0;
  for (int r : results) ok += r == 0;
  co_return ok;
}

TEST(EventLoop, MoreOperationsInFlightThanRingSlots) {
  auto loop = EventLoop::create(8);
  ASSERT_TRUE(loop);
  EXPECT_EQ(run_sync(**loop, many_nops(**loop, 100)), 100);
  EXPECT_EQ(run_sync(**loop, parallel_nops(**loop, 1000)), 1000);
}

// Three coroutines resumed in one iteration: the first queues a send, the second works for
// 200 microseconds, the third looks for the sent byte. The send must not wait in the ring for
// the whole iteration: it goes out once it has waited the loop's submit delay (the measured
// cost of one submission, at most 50 µs).
struct StaleSubmission {
  EventLoop& loop;
  int sender;
  int receiver;
  int sent = -1;
  bool seen_by_third = false;
};

Task<void> send_first(StaleSubmission& t) {
  co_await t.loop.yield();
  const char byte = 'x';
  t.sent = co_await uring::send(t.loop, t.sender, &byte, 1);
}

Task<void> work_second(StaleSubmission& t) {
  co_await t.loop.yield();
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
  while (std::chrono::steady_clock::now() < until) {
  }
}

Task<void> look_third(StaleSubmission& t) {
  co_await t.loop.yield();
  pollfd p{t.receiver, POLLIN, 0};
  // The loop cannot run meanwhile: only a send already submitted can arrive.
  t.seen_by_third = ::poll(&p, 1, 500) == 1;
}

TEST(EventLoop, QueuedOperationIsSubmittedWhileLaterCoroutinesRunLong) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  StaleSubmission t{**loop, fds[0], fds[1]};
  spawn(send_first(t));
  spawn(work_second(t));
  spawn(look_third(t));
  while ((*loop)->run_once(true)) {
  }
  EXPECT_EQ(t.sent, 1);
  EXPECT_TRUE(t.seen_by_third);
  close(fds[0]);
  close(fds[1]);
}

// Two coroutines resumed in one iteration: the first asks for a prompt submission and queues a
// send, the second looks for the sent byte straight away. Held back for the batch, the send
// could not arrive while the second coroutine blocks the loop.
Task<void> send_promptly(StaleSubmission& t) {
  co_await t.loop.yield();
  const char byte = 'x';
  t.loop.submit_promptly();
  t.sent = co_await uring::send(t.loop, t.sender, &byte, 1);
}

Task<void> look_second(StaleSubmission& t) {
  co_await t.loop.yield();
  pollfd p{t.receiver, POLLIN, 0};
  t.seen_by_third = ::poll(&p, 1, 500) == 1;
}

TEST(EventLoop, PromptSubmissionGoesOutBeforeTheNextCoroutineRuns) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  StaleSubmission t{**loop, fds[0], fds[1]};
  spawn(send_promptly(t));
  spawn(look_second(t));
  while ((*loop)->run_once(true)) {
  }
  EXPECT_EQ(t.sent, 1);
  EXPECT_TRUE(t.seen_by_third);
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace qblock
