#include "drivers/host/real_clock.h"

namespace vmlet::drivers {

api::Clock::MonotonicTime RealClock::MonotonicNow() const {
  return std::chrono::steady_clock::now();
}

api::Clock::WallTime RealClock::WallNow() const { return std::chrono::system_clock::now(); }

bool RealClock::WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          MonotonicTime deadline, const std::function<bool()>& done) {
  return cv.wait_until(lock, deadline, done);
}

}  // namespace vmlet::drivers
