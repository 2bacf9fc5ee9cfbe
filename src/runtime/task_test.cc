// Tests for Task<T>, when_all, spawn and run_sync.
#include "qblock/task.h"

#include <gtest/gtest.h>

#include "qblock/driver/uring.h"
#include "qblock/event_loop.h"
#include "runtime/sync.h"

namespace qblock {
namespace {

Task<int> constant(int v) { co_return v; }

Task<long> sum_synchronous(int count) {
  long sum = 0;
  for (int i = 0; i < count; ++i) sum += co_await constant(1);
  co_return sum;
}

// house-style.md "Async": a million synchronously completing awaits must not overflow the
// stack (this is what the asan preset exists to catch).
TEST(Task, MillionSynchronousAwaitsDoNotGrowTheStack) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EXPECT_EQ(run_sync(**loop, sum_synchronous(1000000)), 1000000);
}

Task<int> yield_then(EventLoop& loop, int v) {
  co_await loop.yield();
  co_return v;
}

Task<long> sum_asynchronous(EventLoop& loop, int count) {
  long sum = 0;
  for (int i = 0; i < count; ++i) sum += co_await yield_then(loop, 2);
  co_return sum;
}

TEST(Task, AsynchronousCompletionsResumeTheAwaiter) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EXPECT_EQ(run_sync(**loop, sum_asynchronous(**loop, 100000)), 200000);
}

Task<int> sleep_then(EventLoop& loop, int ms, int v) {
  co_await uring::sleep(loop, std::chrono::milliseconds(ms));
  co_return v;
}

Task<int> gather(EventLoop& loop) {
  std::vector<Task<int>> tasks;
  tasks.push_back(sleep_then(loop, 20, 1));
  tasks.push_back(constant(2));
  tasks.push_back(sleep_then(loop, 5, 3));
  std::vector<int> results = co_await when_all(std::move(tasks));
  co_return results[0] * 100 + results[1] * 10 + results[2];
}

TEST(Task, WhenAllKeepsOrderAcrossSyncAndAsyncChildren) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EXPECT_EQ(run_sync(**loop, gather(**loop)), 123);
}

Task<void> increment_later(EventLoop& loop, int* counter) {
  co_await loop.yield();
  ++*counter;
}

TEST(Task, SpawnedTasksRunToCompletion) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  int counter = 0;
  for (int i = 0; i < 10; ++i) spawn(increment_later(**loop, &counter));
  while ((*loop)->run_once(false)) {
  }
  EXPECT_EQ(counter, 10);
}

Task<void> locked_append(EventLoop& loop, AsyncMutex& mutex, std::vector<int>& out, int id) {
  AsyncMutex::Guard guard = co_await mutex.lock();
  out.push_back(id);
  co_await loop.yield();
  out.push_back(id);
}

Task<void> contend(EventLoop& loop, std::vector<int>& out) {
  AsyncMutex mutex(loop);
  std::vector<Task<void>> tasks;
  for (int i = 0; i < 3; ++i) tasks.push_back(locked_append(loop, mutex, out, i));
  co_await when_all(std::move(tasks));
}

TEST(AsyncMutex, SerialisesCriticalSectionsInFifoOrder) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  std::vector<int> out;
  run_sync(**loop, contend(**loop, out));
  EXPECT_EQ(out, (std::vector<int>{0, 0, 1, 1, 2, 2}));
}

Task<int> in_worker(EventLoop& loop) {
  int r = co_await uring::run_in_worker(loop, [] { return 42; });
  co_return r;
}

TEST(EventLoop, WorkerThreadResultsComeBackOnTheLoop) {
  auto loop = EventLoop::create();
  ASSERT_TRUE(loop);
  EXPECT_EQ(run_sync(**loop, in_worker(**loop)), 42);
}

}  // namespace
}  // namespace qblock
