#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>

#include "api/clock.h"

namespace vmlet::testing {

// A clock that moves only when a test says so. Monotonic and wall time start
// at fixed points and move together by Advance(). Waiters (WaitUntil) are
// woken on every Advance(), so code that waits for a deadline proceeds exactly
// when the test steps past it: nothing sleeps.
class FakeClock final : public api::Clock {
 public:
  FakeClock()
      : monotonic_(MonotonicTime(std::chrono::hours(1000))),
        // 2026-11-28T00:00:00Z
        wall_(WallTime(std::chrono::seconds(1795824000))) {}

  MonotonicTime MonotonicNow() const override {
    std::lock_guard lock(mu_);
    return monotonic_;
  }
  WallTime WallNow() const override {
    std::lock_guard lock(mu_);
    return wall_;
  }

  void Advance(std::chrono::nanoseconds by) {
    std::multiset<std::condition_variable*> waiters;
    {
      std::lock_guard lock(mu_);
      monotonic_ += by;
      wall_ += std::chrono::duration_cast<WallTime::duration>(by);
      waiters = waiters_;
    }
    for (std::condition_variable* cv : waiters) cv->notify_all();
  }

  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 MonotonicTime deadline, const std::function<bool()>& done) override {
    Register(&cv, true);
    // Advance() notifies without the caller's mutex, so a notification can
    // fall between the check and the wait; the short real-time wait bounds
    // that window instead of losing the wakeup. Fake time still decides when
    // the deadline has passed.
    while (!done() && MonotonicNow() < deadline) cv.wait_for(lock, std::chrono::milliseconds(1));
    Register(&cv, false);
    return done();
  }

  // The number of threads blocked in WaitUntil (lets a test wait until a
  // worker is parked before it advances time).
  size_t waiters() const {
    std::lock_guard lock(mu_);
    return waiters_.size();
  }

 private:
  void Register(std::condition_variable* cv, bool add) {
    std::lock_guard lock(mu_);
    if (add) {
      waiters_.insert(cv);
    } else {
      waiters_.erase(waiters_.find(cv));
    }
  }

  mutable std::mutex mu_;
  MonotonicTime monotonic_;                          // guarded by mu_
  WallTime wall_;                                    // guarded by mu_
  std::multiset<std::condition_variable*> waiters_;  // guarded by mu_
};

}  // namespace vmlet::testing
