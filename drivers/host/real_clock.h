#pragma once

#include "api/clock.h"

namespace vmlet::drivers {

// The host's clocks: std::chrono::steady_clock and system_clock. The only
// place in vmlet that reads real time or waits for it.
class RealClock final : public api::Clock {
 public:
  MonotonicTime MonotonicNow() const override;
  WallTime WallNow() const override;
  bool WaitUntil(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                 MonotonicTime deadline, const std::function<bool()>& done) override;
};

}  // namespace vmlet::drivers
