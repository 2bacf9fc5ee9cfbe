// Tests for RangeLocks: overlapping lockers wait for the holder, disjoint ones do not.
#include "jobs/range_locks.h"

#include <gtest/gtest.h>

#include <string>

#include "qblock/event_loop.h"

namespace qblock {
namespace {

Task<void> hold(EventLoop& loop, RangeLocks& locks, uint64_t offset, uint64_t bytes, int yields,
                std::string& log, char name) {
  co_await locks.lock(offset, bytes);
  log += name;
  for (int i = 0; i < yields; ++i) co_await loop.yield();
  log += name;
  locks.unlock(offset, bytes);
}

Task<void> three_lockers(EventLoop& loop, RangeLocks& locks, std::string& log) {
  std::vector<Task<void>> tasks;
  tasks.push_back(hold(loop, locks, 0, 4096, 5, log, 'a'));     // holds [0, 4k)
  tasks.push_back(hold(loop, locks, 4095, 2, 1, log, 'b'));     // overlaps a's last byte
  tasks.push_back(hold(loop, locks, 4096, 4096, 1, log, 'c'));  // touches a, no overlap
  co_await when_all(std::move(tasks));
}

TEST(RangeLocks, OverlappingWaitDisjointRun) {
  auto created = EventLoop::create();
  ASSERT_TRUE(created);
  EventLoop& loop = **created;
  RangeLocks locks(loop);
  std::string log;
  run_sync(loop, three_lockers(loop, locks, log));
  // c runs inside a's hold; b starts only after a released.
  EXPECT_EQ(log, "accabb");
  EXPECT_FALSE(locks.overlaps(0, UINT64_MAX / 2));
}

TEST(RangeLocks, OverlapsIsHalfOpen) {
  auto created = EventLoop::create();
  ASSERT_TRUE(created);
  EventLoop& loop = **created;
  RangeLocks locks(loop);
  run_sync(loop, locks.lock(100, 10));
  EXPECT_TRUE(locks.overlaps(109, 1));
  EXPECT_TRUE(locks.overlaps(0, 101));
  EXPECT_FALSE(locks.overlaps(110, 5));
  EXPECT_FALSE(locks.overlaps(0, 100));
  locks.unlock(100, 10);
  EXPECT_FALSE(locks.overlaps(100, 10));
}

}  // namespace
}  // namespace qblock
