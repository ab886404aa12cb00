#include "drivers/host/real_clock.h"

#include <gtest/gtest.h>

namespace vmlet::drivers {
namespace {

TEST(RealClockTest, MonotonicTimeNeverGoesBackwards) {
  RealClock clock;
  api::Clock::MonotonicTime previous = clock.MonotonicNow();
  for (int i = 0; i < 1000; ++i) {
    api::Clock::MonotonicTime now = clock.MonotonicNow();
    EXPECT_GE(now, previous);
    previous = now;
  }
}

TEST(RealClockTest, WallTimeIsAfter2026) {
  RealClock clock;
  // 2026-01-01T00:00:00Z: a clock stuck at the epoch would mean a broken seam.
  EXPECT_GT(std::chrono::system_clock::to_time_t(clock.WallNow()), 1767225600);
}

}  // namespace
}  // namespace vmlet::drivers
