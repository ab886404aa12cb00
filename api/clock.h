#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

namespace vmlet::api {

// Time as a seam (see Envoy's TimeSource). Monotonic time measures intervals
// (timeouts, backoff, boot latency); wall time is only for records and display.
// Only drivers/host/real_clock.cc reads the real clocks or waits on them;
// tests use a fake clock that they step by hand, so nothing in a unit test
// sleeps.
//
// Thread-safe: implementations may be called from any thread.
class Clock {
 public:
  using MonotonicTime = std::chrono::steady_clock::time_point;
  using WallTime = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;

  virtual MonotonicTime MonotonicNow() const = 0;
  virtual WallTime WallNow() const = 0;

  // Waits on `cv` (with `lock` held by the caller, as for
  // std::condition_variable::wait) until `done()` is true or MonotonicNow()
  // reaches `deadline`, whichever comes first. Returns done(). Whoever changes
  // what done() reads must notify `cv`; the clock itself notifies it when its
  // time moves (a fake clock's Advance()).
  virtual bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                         MonotonicTime deadline, const std::function<bool()>& done) = 0;
};

using ClockPtr = std::unique_ptr<Clock>;

}  // namespace vmlet::api
