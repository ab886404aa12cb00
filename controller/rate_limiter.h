#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "api/vm_key.h"

namespace vmlet::controller {

// How long a key waits before it is retried (client-go's
// workqueue.RateLimiter). The work queue asks When() each time a reconcile of
// the key fails, and Forget() once it succeeds.
//
// Thread-safe: implementations may be called from any thread.
class RateLimiter {
 public:
  virtual ~RateLimiter() = default;

  // Records one more failure of `key` and returns how long to wait before
  // retrying it.
  virtual std::chrono::nanoseconds When(const api::VmKey& key) = 0;
  // Stops tracking `key`: its failure count returns to 0, so the next When()
  // returns the first delay again. A key never seen is a no-op.
  virtual void Forget(const api::VmKey& key) = 0;
  // The number of When() calls for `key` since it was last forgotten.
  virtual int NumRequeues(const api::VmKey& key) const = 0;
};

using RateLimiterPtr = std::unique_ptr<RateLimiter>;

// vmlet's retry backoff after a failed reconcile: 5 ms doubling to 5 min
// (docs/reconcile.md).
inline constexpr std::chrono::nanoseconds kDefaultRetryBaseDelay = std::chrono::milliseconds(5);
inline constexpr std::chrono::nanoseconds kDefaultRetryMaxDelay = std::chrono::minutes(5);

// Per-key exponential backoff (client-go's ItemExponentialFailureRateLimiter):
// the n-th When() for a key (n = 0, 1, ...) returns min(base * 2^n, max).
// With the defaults: 5 ms, 10 ms, 20 ms, ..., 163.84 s, then 300 s for ever.
// Never overflows, however many failures a key accumulates.
//
// REQUIRES: 0 <= base <= max.
// Thread-safe.
class ExponentialFailureRateLimiter final : public RateLimiter {
 public:
  ExponentialFailureRateLimiter(std::chrono::nanoseconds base, std::chrono::nanoseconds max);

  std::chrono::nanoseconds When(const api::VmKey& key) override;
  void Forget(const api::VmKey& key) override;
  int NumRequeues(const api::VmKey& key) const override;

 private:
  const std::chrono::nanoseconds base_;
  const std::chrono::nanoseconds max_;

  mutable std::mutex mu_;
  std::unordered_map<api::VmKey, int, api::VmKeyHash> failures_;  // guarded by mu_
};

// Combines limiters (client-go's MaxOfRateLimiter): When() asks every limiter
// (so each records the failure) and returns the longest delay; Forget()
// forgets in all of them; NumRequeues() is the largest of their counts.
//
// REQUIRES: `limiters` is not empty and holds no null pointer.
// Thread-safe: holds no mutable state of its own; each limiter guards its own.
class MaxOfRateLimiter final : public RateLimiter {
 public:
  explicit MaxOfRateLimiter(std::vector<RateLimiterPtr> limiters);

  std::chrono::nanoseconds When(const api::VmKey& key) override;
  void Forget(const api::VmKey& key) override;
  int NumRequeues(const api::VmKey& key) const override;

 private:
  const std::vector<RateLimiterPtr> limiters_;
};

// The limiter vmlet's work queue uses: ExponentialFailureRateLimiter with
// kDefaultRetryBaseDelay and kDefaultRetryMaxDelay.
RateLimiterPtr NewDefaultRateLimiter();

// The crash-loop restart delay (docs/reconcile.md).
inline constexpr std::chrono::nanoseconds kCrashLoopBaseDelay = std::chrono::seconds(10);
inline constexpr std::chrono::nanoseconds kCrashLoopMaxDelay = std::chrono::minutes(5);

// How long to wait before restarting a VM after its `n`-th consecutive
// failure: min(10 s * n^2, 5 min) * jitter_factor, rounded to the nearest
// nanosecond. n = 0 (no failure) is 0. Without jitter: 10 s, 40 s, 90 s,
// 160 s, 250 s, then 300 s for n >= 6.
//
// `jitter_factor` is drawn by the caller from [1.0, 1.1), so that this
// function stays pure and its results exact in tests. A factor below 1.0
// (or NaN) counts as 1.0, one above 1.1 as 1.1.
std::chrono::nanoseconds CrashLoopDelay(uint32_t n, double jitter_factor);

}  // namespace vmlet::controller
