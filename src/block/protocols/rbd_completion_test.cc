// Tests of the handoff of librbd completions to the loop (rbd_completion.h), without a
// cluster: other threads play librbd's, finishing requests in any order and in bursts.
#include "block/protocols/rbd_completion.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "base/test_macros.h"

namespace qblock::rbd_client {

// Reaches the private parts librbd's callback would use.
class RbdCompletionsTest : public ::testing::Test {
 protected:
  // What RbdAio::start does once librbd accepted the request.
  static void issue(RbdCompletions& c) { c.issued(); }
  // What librbd's callback does, from any thread.
  static void complete(RbdAio* aio, int64_t result) {
    aio->result_ = result;
    aio->owner_.post(aio);
  }
};

namespace {

// The request's result, awaited from a coroutine of its own (g++ 12 cannot await a
// non-copyable awaiter inside a lambda coroutine).
Task<int64_t> result_of(RbdAio& aio) {
  int64_t result = co_await aio;
  co_return result;
}

}  // namespace

TEST_F(RbdCompletionsTest, CompletionsFromOtherThreadsResumeOnTheLoop) {
  auto loop = EventLoop::create();
  ASSERT_OK(loop);
  auto completions = RbdCompletions::create(**loop);
  ASSERT_OK(completions);
  RbdCompletions& c = **completions;
  c.start();
  constexpr int kRequests = 2000;
  constexpr int kThreads = 4;
  std::vector<std::unique_ptr<RbdAio>> aios;
  for (int i = 0; i < kRequests; ++i) aios.push_back(std::make_unique<RbdAio>(c));
  const std::thread::id loop_thread = std::this_thread::get_id();
  std::atomic<bool> go{false};
  auto body = [&]() -> Task<int64_t> {
    for (int i = 0; i < kRequests; ++i) issue(c);
    go = true;
    int64_t sum = 0;
    for (int i = 0; i < kRequests; ++i) {
      int64_t r = co_await result_of(*aios[i]);
      EXPECT_EQ(std::this_thread::get_id(), loop_thread);
      EXPECT_EQ(r, i);
      sum += r;
    }
    co_await c.shutdown();
    co_return sum;
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go) std::this_thread::yield();
      // Thread t completes every kThreads-th request, newest first, with pauses so that
      // some completions find the loop asleep and some arrive in bursts.
      for (int i = kRequests - 1 - t; i >= 0; i -= kThreads) {
        complete(aios[i].get(), i);
        if (i % 97 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    });
  }
  int64_t sum = run_sync(**loop, body());
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(sum, int64_t{kRequests} * (kRequests - 1) / 2);
  EXPECT_EQ(c.in_flight(), 0u);
  EXPECT_EQ((*loop)->in_flight(), 0u);
}

TEST_F(RbdCompletionsTest, ShutdownWaitsForRequestsInFlight) {
  auto loop = EventLoop::create();
  ASSERT_OK(loop);
  auto completions = RbdCompletions::create(**loop);
  ASSERT_OK(completions);
  RbdCompletions& c = **completions;
  c.start();
  RbdAio aio(c);
  std::thread late;
  auto body = [&]() -> Task<int64_t> {
    issue(c);
    late = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      complete(&aio, -5);
    });
    co_await c.shutdown();  // returns only once the request has completed
    EXPECT_EQ(c.in_flight(), 0u);
    co_return co_await result_of(aio);
  };
  EXPECT_EQ(run_sync(**loop, body()), -5);
  late.join();
  EXPECT_EQ((*loop)->in_flight(), 0u);
}

}  // namespace qblock::rbd_client
