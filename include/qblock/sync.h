// Coroutine synchronisation for one EventLoop thread: AsyncMutex and WaitQueue.
// Waiters are resumed through the loop's ready queue, never inline, so wake-up chains do not
// grow the stack.
#pragma once

#include <coroutine>
#include <deque>
#include <utility>

#include "qblock/event_loop.h"

namespace qblock {

// A queue of suspended coroutines waiting for a condition the caller re-checks after waking.
// Intrusive: each waiter's link lives in its awaiter, inside the waiting coroutine's frame, so
// an idle queue owns no memory and waiting allocates nothing.
class WaitQueue {
 public:
  explicit WaitQueue(EventLoop& loop) : loop_(&loop) {}
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  class [[nodiscard]] Awaiter {
   public:
    explicit Awaiter(WaitQueue& queue) : queue_(queue) {}
    // Linked by address while suspended: never copied or moved.
    Awaiter(const Awaiter&) = delete;
    Awaiter& operator=(const Awaiter&) = delete;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept {
      handle_ = h;
      queue_.push(this);
    }
    void await_resume() const noexcept {}

   private:
    friend class WaitQueue;
    WaitQueue& queue_;
    std::coroutine_handle<> handle_;
    Awaiter* next_ = nullptr;
  };
  // Suspends until wake_one()/wake_all() picks this waiter.
  Awaiter wait() { return Awaiter(*this); }

  // Schedules the oldest waiter; returns false if there was none.
  bool wake_one() {
    if (!head_) return false;
    Awaiter* w = head_;
    head_ = w->next_;
    if (!head_) tail_ = nullptr;
    // The awaiter is not touched after this: the woken coroutine may run and free it.
    loop_->post(w->handle_);
    return true;
  }
  // Schedules every waiter.
  void wake_all() {
    while (wake_one()) {
    }
  }
  bool empty() const { return head_ == nullptr; }

 private:
  void push(Awaiter* w) {
    w->next_ = nullptr;
    if (tail_) {
      tail_->next_ = w;
    } else {
      head_ = w;
    }
    tail_ = w;
  }

  EventLoop* loop_;
  Awaiter* head_ = nullptr;  // oldest waiter
  Awaiter* tail_ = nullptr;
};

// A FIFO mutex for coroutines. lock() yields a guard that unlocks when destroyed; ownership is
// handed directly to the next waiter, so nobody can barge in between.
class AsyncMutex {
 public:
  explicit AsyncMutex(EventLoop& loop) : loop_(&loop) {}

  class [[nodiscard]] Guard {
   public:
    Guard() = default;
    explicit Guard(AsyncMutex* m) : mutex_(m) {}
    Guard(Guard&& o) noexcept : mutex_(std::exchange(o.mutex_, nullptr)) {}
    Guard& operator=(Guard&& o) noexcept {
      if (this != &o) {
        unlock();
        mutex_ = std::exchange(o.mutex_, nullptr);
      }
      return *this;
    }
    ~Guard() { unlock(); }
    // Releases the mutex early. Safe to call twice.
    void unlock() {
      if (mutex_) std::exchange(mutex_, nullptr)->unlock();
    }

   private:
    AsyncMutex* mutex_ = nullptr;
  };

  struct [[nodiscard]] LockAwaiter {
    AsyncMutex& mutex;
    bool await_ready() noexcept {
      if (mutex.locked_) return false;
      mutex.locked_ = true;
      return true;
    }
    void await_suspend(std::coroutine_handle<> h) { mutex.waiters_.push_back(h); }
    Guard await_resume() noexcept { return Guard(&mutex); }
  };
  LockAwaiter lock() { return LockAwaiter{*this}; }
  bool locked() const { return locked_; }

 private:
  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    // Ownership passes to the first waiter; locked_ stays true.
    loop_->post(waiters_.front());
    waiters_.pop_front();
  }

  EventLoop* loop_;
  bool locked_ = false;
  std::deque<std::coroutine_handle<>> waiters_;
};

}  // namespace qblock
