#include "controller/rate_limiter.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <utility>

namespace vmlet::controller {

ExponentialFailureRateLimiter::ExponentialFailureRateLimiter(std::chrono::nanoseconds base,
                                                             std::chrono::nanoseconds max)
    : base_(base), max_(max) {}

std::chrono::nanoseconds ExponentialFailureRateLimiter::When(const api::VmKey& key) {
  int exponent;
  {
    std::lock_guard lock(mu_);
    int& failures = failures_[key];
    exponent = failures;
    if (failures < INT_MAX) ++failures;
  }
  // base * 2^exponent > max  <=>  base > floor(max / 2^exponent), which
  // cannot overflow; after 63 doublings any positive base exceeds any max.
  if (base_.count() <= 0) return std::chrono::nanoseconds(0);
  if (exponent >= 63 || base_.count() > (max_.count() >> exponent)) return max_;
  return std::chrono::nanoseconds(base_.count() << exponent);
}

void ExponentialFailureRateLimiter::Forget(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  failures_.erase(key);
}

int ExponentialFailureRateLimiter::NumRequeues(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  auto it = failures_.find(key);
  return it == failures_.end() ? 0 : it->second;
}

MaxOfRateLimiter::MaxOfRateLimiter(std::vector<RateLimiterPtr> limiters)
    : limiters_(std::move(limiters)) {}

std::chrono::nanoseconds MaxOfRateLimiter::When(const api::VmKey& key) {
  std::chrono::nanoseconds longest(0);
  for (const RateLimiterPtr& limiter : limiters_) longest = std::max(longest, limiter->When(key));
  return longest;
}

void MaxOfRateLimiter::Forget(const api::VmKey& key) {
  for (const RateLimiterPtr& limiter : limiters_) limiter->Forget(key);
}

int MaxOfRateLimiter::NumRequeues(const api::VmKey& key) const {
  int most = 0;
  for (const RateLimiterPtr& limiter : limiters_) most = std::max(most, limiter->NumRequeues(key));
  return most;
}

RateLimiterPtr NewDefaultRateLimiter() {
  return std::make_unique<ExponentialFailureRateLimiter>(kDefaultRetryBaseDelay,
                                                         kDefaultRetryMaxDelay);
}

std::chrono::nanoseconds CrashLoopDelay(uint32_t n, double jitter_factor) {
  // 10 s * n^2 reaches the 5 min cap once n^2 >= 30; n^2 fits in 64 bits.
  const uint64_t n_squared = uint64_t{n} * n;
  const uint64_t cap_factor = kCrashLoopMaxDelay / kCrashLoopBaseDelay;
  const std::chrono::nanoseconds delay =
      n_squared >= cap_factor ? kCrashLoopMaxDelay
                              : kCrashLoopBaseDelay * static_cast<int64_t>(n_squared);
  // Written so that NaN fails the first test and becomes 1.0.
  const double factor = !(jitter_factor >= 1.0) ? 1.0 : std::min(jitter_factor, 1.1);
  return std::chrono::nanoseconds(std::llround(static_cast<double>(delay.count()) * factor));
}

}  // namespace vmlet::controller
