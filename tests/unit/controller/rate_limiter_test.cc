#include "controller/rate_limiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

namespace vmlet::controller {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

const api::VmKey kWeb{"default", "web"};
const api::VmKey kDb{"default", "db"};

TEST(ExponentialFailureRateLimiterTest, DefaultBackoffDoublesFrom5MsAndCapsAt300Seconds) {
  RateLimiterPtr limiter = NewDefaultRateLimiter();
  const std::vector<nanoseconds> expected = {
      milliseconds(5),      milliseconds(10),     milliseconds(20),     milliseconds(40),
      milliseconds(80),     milliseconds(160),    milliseconds(320),    milliseconds(640),
      milliseconds(1280),   milliseconds(2560),   milliseconds(5120),   milliseconds(10240),
      milliseconds(20480),  milliseconds(40960),  milliseconds(81920),  milliseconds(163840),
      milliseconds(300000), milliseconds(300000), milliseconds(300000),
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(limiter->When(kWeb), expected[i]) << "failure " << i;
  }
}

TEST(ExponentialFailureRateLimiterTest, NumRequeuesCountsFailuresSinceForget) {
  ExponentialFailureRateLimiter limiter(milliseconds(5), std::chrono::minutes(5));
  EXPECT_EQ(limiter.NumRequeues(kWeb), 0);
  (void)limiter.When(kWeb);
  (void)limiter.When(kWeb);
  (void)limiter.When(kWeb);
  EXPECT_EQ(limiter.NumRequeues(kWeb), 3);

  limiter.Forget(kWeb);

  EXPECT_EQ(limiter.NumRequeues(kWeb), 0);
}

TEST(ExponentialFailureRateLimiterTest, ForgetRestartsTheBackoffAtTheBaseDelay) {
  ExponentialFailureRateLimiter limiter(milliseconds(5), std::chrono::minutes(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(10));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(20));

  limiter.Forget(kWeb);

  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(10));
}

TEST(ExponentialFailureRateLimiterTest, ForgettingAnUnknownKeyIsANoOp) {
  ExponentialFailureRateLimiter limiter(milliseconds(5), std::chrono::minutes(5));
  limiter.Forget(kWeb);
  EXPECT_EQ(limiter.NumRequeues(kWeb), 0);
  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));
}

TEST(ExponentialFailureRateLimiterTest, KeysBackOffIndependently) {
  ExponentialFailureRateLimiter limiter(milliseconds(5), std::chrono::minutes(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(10));
  EXPECT_EQ(limiter.When(kDb), milliseconds(5));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(20));

  limiter.Forget(kWeb);

  EXPECT_EQ(limiter.NumRequeues(kWeb), 0);
  EXPECT_EQ(limiter.NumRequeues(kDb), 1);
  EXPECT_EQ(limiter.When(kDb), milliseconds(10));
}

TEST(ExponentialFailureRateLimiterTest, StaysAtTheCapAfterAThousandFailures) {
  ExponentialFailureRateLimiter limiter(milliseconds(5), std::chrono::minutes(5));
  for (int i = 0; i < 16; ++i) (void)limiter.When(kWeb);
  for (int i = 16; i < 1000; ++i) {
    ASSERT_EQ(limiter.When(kWeb), seconds(300)) << "failure " << i;
  }
  EXPECT_EQ(limiter.NumRequeues(kWeb), 1000);
}

TEST(ExponentialFailureRateLimiterTest, DoesNotOverflowWhenTheCapIsTheLargestDuration) {
  const nanoseconds max = nanoseconds::max();
  ExponentialFailureRateLimiter limiter(nanoseconds(1), max);
  for (int i = 0; i <= 62; ++i) {
    ASSERT_EQ(limiter.When(kWeb), nanoseconds(int64_t{1} << i)) << "failure " << i;
  }
  for (int i = 63; i < 1000; ++i) {
    ASSERT_EQ(limiter.When(kWeb), max) << "failure " << i;
  }
}

TEST(ExponentialFailureRateLimiterTest, ZeroBaseNeverDelays) {
  ExponentialFailureRateLimiter limiter(nanoseconds(0), seconds(1));
  for (int i = 0; i < 100; ++i) ASSERT_EQ(limiter.When(kWeb), nanoseconds(0));
}

RateLimiterPtr Exponential(nanoseconds base, nanoseconds max) {
  return std::make_unique<ExponentialFailureRateLimiter>(base, max);
}

std::vector<RateLimiterPtr> Limiters(RateLimiterPtr a, RateLimiterPtr b) {
  std::vector<RateLimiterPtr> limiters;
  limiters.push_back(std::move(a));
  limiters.push_back(std::move(b));
  return limiters;
}

TEST(MaxOfRateLimiterTest, ReturnsTheLongestDelayOfItsLimiters) {
  // The first doubles from 1 ms uncapped; the second from 5 ms, capped at 15 ms.
  MaxOfRateLimiter limiter(Limiters(Exponential(milliseconds(1), seconds(60)),
                                    Exponential(milliseconds(5), milliseconds(15))));
  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));   // max(1, 5)
  EXPECT_EQ(limiter.When(kWeb), milliseconds(10));  // max(2, 10)
  EXPECT_EQ(limiter.When(kWeb), milliseconds(15));  // max(4, 15)
  EXPECT_EQ(limiter.When(kWeb), milliseconds(15));  // max(8, 15)
  EXPECT_EQ(limiter.When(kWeb), milliseconds(16));  // max(16, 15)
  EXPECT_EQ(limiter.NumRequeues(kWeb), 5);
}

TEST(MaxOfRateLimiterTest, ForgetForgetsInEveryLimiter) {
  MaxOfRateLimiter limiter(Limiters(Exponential(milliseconds(1), seconds(60)),
                                    Exponential(milliseconds(5), seconds(60))));
  (void)limiter.When(kWeb);
  (void)limiter.When(kWeb);

  limiter.Forget(kWeb);

  EXPECT_EQ(limiter.NumRequeues(kWeb), 0);
  EXPECT_EQ(limiter.When(kWeb), milliseconds(5));
}

TEST(CrashLoopDelayTest, GrowsAsTenSecondsTimesNSquaredUpToFiveMinutes) {
  const std::vector<std::pair<uint32_t, nanoseconds>> table = {
      {0, seconds(0)},     {1, seconds(10)},
      {2, seconds(40)},    {3, seconds(90)},
      {4, seconds(160)},   {5, seconds(250)},
      {6, seconds(300)},   {7, seconds(300)},
      {100, seconds(300)}, {std::numeric_limits<uint32_t>::max(), seconds(300)},
  };
  for (const auto& [n, delay] : table) {
    EXPECT_EQ(CrashLoopDelay(n, 1.0), delay) << "n=" << n;
  }
}

TEST(CrashLoopDelayTest, MultipliesByTheJitterFactor) {
  EXPECT_EQ(CrashLoopDelay(1, 1.05), milliseconds(10500));
  EXPECT_EQ(CrashLoopDelay(3, 1.05), milliseconds(94500));
  EXPECT_EQ(CrashLoopDelay(6, 1.05), seconds(315));  // jitter applies after the cap
  EXPECT_EQ(CrashLoopDelay(2, 1.0999), milliseconds(43996));
  EXPECT_EQ(CrashLoopDelay(0, 1.05), seconds(0));
}

TEST(CrashLoopDelayTest, ClampsAJitterFactorOutsideOneToOnePointOne) {
  EXPECT_EQ(CrashLoopDelay(1, 0.5), seconds(10));
  EXPECT_EQ(CrashLoopDelay(1, 2.0), seconds(11));
  EXPECT_EQ(CrashLoopDelay(1, std::nan("")), seconds(10));
  EXPECT_EQ(CrashLoopDelay(6, std::numeric_limits<double>::infinity()), seconds(330));
}

}  // namespace
}  // namespace vmlet::controller
