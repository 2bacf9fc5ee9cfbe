// Task<T>: the lazy, move-only, single-threaded coroutine type of qblock.
//
// Awaiting a task runs it inline. If it finishes without suspending, the awaiting coroutine
// continues without suspending either; only a task that suspended and finished later resumes
// its awaiter (from final_suspend). No symmetric transfer is used, so a million synchronously
// completing awaits cost no stack (g++ 12 overflows with symmetric transfer at -O0 and ASan).
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

namespace qblock {

template <typename T = void>
class Task;

namespace detail {

struct TaskPromiseBase {
  std::coroutine_handle<> continuation;  // resumed when finishing after a suspension
  bool running_inline = false;           // set while the awaiter runs the task inline
  bool finished_inline = false;          // finished while running_inline was set

  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <typename P>
    void await_suspend(std::coroutine_handle<P> self) noexcept {
      TaskPromiseBase& p = self.promise();
      if (p.running_inline) {
        p.finished_inline = true;  // the awaiter continues on its own stack
        return;
      }
      // Finished after a suspension: resume the awaiter (a plain call, not symmetric
      // transfer). The frame may be destroyed inside; nothing here touches it afterwards.
      std::coroutine_handle<> next = p.continuation;
      if (next) next.resume();
    }
    void await_resume() noexcept {}
  };

  // Frames come from the global heap like any other; counting them (per thread) lets tests
  // tell a path's frames from the other allocations it makes.
  static void* operator new(std::size_t size) {
    ++frames_allocated;
    return ::operator new(size);
  }
  // Unsized: clang 14 does not declare the sized global form without -fsized-deallocation.
  static void operator delete(void* frame) noexcept { ::operator delete(frame); }
  static inline thread_local uint64_t frames_allocated = 0;

  std::suspend_always initial_suspend() noexcept { return {}; }
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { std::terminate(); }
};

template <typename T>
struct TaskPromise : TaskPromiseBase {
  std::optional<T> value;
  Task<T> get_return_object() noexcept;
  template <typename U>
  void return_value(U&& v) {
    value.emplace(std::forward<U>(v));
  }
};

template <>
struct TaskPromise<void> : TaskPromiseBase {
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
};

}  // namespace detail

// Number of Task frames allocated on this thread so far (for allocation tests).
inline uint64_t task_frames_allocated() { return detail::TaskPromiseBase::frames_allocated; }

// A lazily started coroutine producing T. Move-only; destroying an unstarted or finished task
// frees its frame. REQUIRES: a started task is awaited (or driven by run_sync) to completion
// before it is destroyed.
template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using Handle = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(Handle h) : handle_(h) {}
  Task(Task&& o) noexcept : handle_(std::exchange(o.handle_, {})) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      handle_ = std::exchange(o.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { reset(); }

  bool valid() const { return static_cast<bool>(handle_); }
  bool done() const { return handle_ && handle_.done(); }

  // Starts the task without an awaiter (used by run_sync and spawn). It runs until its first
  // suspension. REQUIRES: valid() and not yet started.
  void start() { handle_.resume(); }

  // The result of a finished task. REQUIRES: done().
  T take_result() {
    if constexpr (!std::is_void_v<T>) return std::move(*handle_.promise().value);
  }

  struct Awaiter {
    Handle child;
    bool await_ready() noexcept { return false; }
    bool await_suspend(std::coroutine_handle<> caller) noexcept {
      detail::TaskPromiseBase& p = child.promise();
      p.continuation = caller;
      p.running_inline = true;
      child.resume();
      p.running_inline = false;
      return !p.finished_inline;  // false: continue the caller without suspending
    }
    T await_resume() {
      if constexpr (!std::is_void_v<T>) return std::move(*child.promise().value);
    }
  };
  // REQUIRES: the task has not been started.
  Awaiter operator co_await() && noexcept { return Awaiter{handle_}; }

 private:
  void reset() {
    if (handle_) handle_.destroy();
    handle_ = {};
  }
  Handle handle_;
};

namespace detail {
template <typename T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise<T>>::from_promise(*this));
}
inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise<void>>::from_promise(*this));
}

// A fire-and-forget coroutine that frees itself when it finishes.
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

inline Detached run_detached(Task<void> task) { co_await std::move(task); }

// Shared by when_all: counts unfinished children plus one held by the parent while launching.
struct WhenAllState {
  std::size_t remaining = 0;
  std::coroutine_handle<> waiter;
  void child_done() {
    if (--remaining == 0 && waiter) {
      std::coroutine_handle<> w = std::exchange(waiter, {});
      w.resume();
    }
  }
};

struct WhenAllAwaiter {
  WhenAllState* state;
  bool await_ready() noexcept { return state->remaining == 0; }
  void await_suspend(std::coroutine_handle<> h) noexcept { state->waiter = h; }
  void await_resume() noexcept {}
};

template <typename T>
Detached when_all_child(Task<T> task, WhenAllState* state, std::optional<T>* out) {
  out->emplace(co_await std::move(task));
  state->child_done();
}

inline Detached when_all_child_void(Task<void> task, WhenAllState* state) {
  co_await std::move(task);
  state->child_done();
}

}  // namespace detail

// Starts `task` now; it runs on its own and frees itself when finished. The caller must keep
// everything the task references alive until it finishes.
inline void spawn(Task<void> task) { detail::run_detached(std::move(task)); }

// Runs all tasks concurrently and returns their results in order once all have finished.
template <typename T>
Task<std::vector<T>> when_all(std::vector<Task<T>> tasks) {
  detail::WhenAllState state;
  state.remaining = tasks.size() + 1;
  std::vector<std::optional<T>> slots(tasks.size());
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    detail::when_all_child(std::move(tasks[i]), &state, &slots[i]);
  }
  --state.remaining;
  co_await detail::WhenAllAwaiter{&state};
  std::vector<T> results;
  results.reserve(slots.size());
  for (auto& s : slots) results.push_back(std::move(*s));
  co_return results;
}

// Runs all void tasks concurrently; finishes when all have finished.
inline Task<void> when_all(std::vector<Task<void>> tasks) {
  detail::WhenAllState state;
  state.remaining = tasks.size() + 1;
  for (auto& t : tasks) detail::when_all_child_void(std::move(t), &state);
  --state.remaining;
  co_await detail::WhenAllAwaiter{&state};
}

}  // namespace qblock
