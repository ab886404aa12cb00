#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "api/clock.h"
#include "api/vm_key.h"
#include "controller/rate_limiter.h"

namespace vmlet::controller {

// Hooks that feed the vmlet_workqueue_* metrics. Any of them may be empty.
//
// They are called with the queue's mutex held, so that the depth reports
// reach the gauge in the order the depth changed. They must therefore be
// cheap, must not block and must not call back into the queue (updating a
// Prometheus counter or gauge is fine).
struct WorkQueueMetrics {
  // The new number of ready keys (WorkQueue::Len()), each time it changes.
  std::function<void(size_t depth)> depth;
  // A key became pending: it was neither ready nor waiting to be requeued.
  // Adds that are deduplicated are not counted. A delayed key counts when
  // its delay has passed and it joins the ready keys.
  std::function<void()> add;
  // AddRateLimited() was called (and the queue is not shut down).
  std::function<void()> retry;
  // A key was handed out by Get()/TryGet(): monotonic seconds since it
  // became pending (for a delayed key: since its delay passed).
  std::function<void(double seconds)> queue_duration;
};

// The controller's queue of VM keys to reconcile, with client-go's workqueue
// semantics (queue.go, delaying_queue.go, rate_limiting_queue.go) in one class:
//
//  - Deduplicating: a key is pending at most once. Adding a key that is
//    already pending changes nothing, except that an earlier time wins: Add()
//    of a key waiting for its delay makes it ready now, and AddAfter() of a
//    key already waiting for a later time moves it earlier.
//  - Exclusive: a key handed out by Get()/TryGet() is "processing" until
//    Done(key). It is never handed to a second worker meanwhile; if it is
//    added again while processing, it is handed out again after Done().
//  - Fair: ready keys are handed out first in, first out; a key that is
//    requeued or added again joins the back. Delayed keys join the back in
//    the order of the time they became ready.
//  - Delaying: AddAfter()/AddRateLimited() keep a key back until the clock
//    reaches its ready time. Delayed keys join the ready keys whenever the
//    queue next looks at the clock: on every call that adds, takes or
//    completes a key, and when a blocked Get() reaches the earliest time.
//
// Difference from client-go: there, Add() of a key that also waits for a
// delay hands it out now *and* again when the delay passes. Here it is
// handed out once, now: the reconciler is level-triggered and sets its own
// requeue_after each time it runs, so the second run would be redundant.
//
// Shutting down (client-go's ShutDown, not ShutDownWithDrain): later adds
// are ignored and delayed keys are dropped; keys already ready, and keys
// requeued by Done(), are still handed out, after which Get() returns
// std::nullopt.
//
// Thread-safe. The constructor starts no thread. Metrics hooks are called
// with the queue's mutex held (see WorkQueueMetrics); the rate limiter is
// called without it.
class WorkQueue {
 public:
  // `clock` must outlive the queue.
  // REQUIRES: `limiter` is not null.
  WorkQueue(api::Clock& clock, RateLimiterPtr limiter, WorkQueueMetrics metrics = {});
  // REQUIRES: no thread is blocked in Get() (call ShutDown() and join the
  // workers first).
  ~WorkQueue();

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Makes `key` ready now unless it already is (see the class comment). A key
  // that is processing is handed out again after Done(). Wakes one Get().
  // Ignored after ShutDown().
  void Add(const api::VmKey& key);

  // Makes `key` ready once clock.MonotonicNow() >= now + delay. A delay <= 0
  // is Add(key). A key that is already ready stays ready (and is not handed
  // out again later); one already waiting keeps the earlier of its two ready
  // times. Ignored after ShutDown().
  void AddAfter(const api::VmKey& key, std::chrono::nanoseconds delay);

  // AddAfter(key, limiter.When(key)): retry after the key's backoff.
  void AddRateLimited(const api::VmKey& key);
  // limiter.Forget(key): the key's backoff starts again from the first delay.
  // Call it when a reconcile of the key succeeds. Does not remove the key
  // from the queue.
  void Forget(const api::VmKey& key);
  // limiter.NumRequeues(key).
  int NumRequeues(const api::VmKey& key) const;

  // Blocks until a key is ready, then hands it out: the key is processing
  // until Done(key). Returns std::nullopt once the queue is shut down and no
  // key is ready. While only delayed keys remain, waits through
  // clock.WaitUntil() for the earliest one, so a fake clock's Advance()
  // releases it.
  std::optional<api::VmKey> Get();

  // Get() without blocking: std::nullopt if no key is ready now (per the
  // clock) or the queue is shut down and empty.
  std::optional<api::VmKey> TryGet();

  // Ends the processing of `key`. If it was added again meanwhile, it joins
  // the back of the ready keys now. A key that is not processing is a no-op.
  void Done(const api::VmKey& key);

  // Ignores later adds, drops delayed keys and wakes every blocked Get().
  // Idempotent.
  void ShutDown();
  bool ShuttingDown() const;

  // Keys that TryGet() could hand out now: ready, including delayed keys
  // whose time has come, and not processing.
  size_t Len() const;
  // Keys waiting for a ready time that the clock has not reached yet.
  size_t DelayedLen() const;

 private:
  using MonotonicTime = api::Clock::MonotonicTime;
  // Delayed keys in the order they become ready: (ready time, insertion
  // sequence number), so that keys due at the same time stay FIFO.
  using DelayedSlot = std::pair<MonotonicTime, uint64_t>;

  // Each REQUIRES mu_ held.
  // Marks `key` pending as of `since`, dropping any delay it waited for.
  void AddLocked(const api::VmKey& key, MonotonicTime since);
  // Moves delayed keys whose ready time is <= now to the ready keys.
  void PromoteDueLocked(MonotonicTime now);
  std::optional<api::VmKey> PopLocked(MonotonicTime now);
  void EraseDelayedLocked(const api::VmKey& key);
  // Calls metrics_.depth if the number of ready keys changed.
  void ReportDepthLocked();

  api::Clock& clock_;
  const RateLimiterPtr limiter_;
  const WorkQueueMetrics metrics_;

  mutable std::mutex mu_;
  // Signalled when a key becomes ready, the earliest delay changes, or the
  // queue shuts down.
  std::condition_variable cv_;
  // Ready keys, in the order they are handed out. Each is also in pending_
  // and not in processing_.
  std::deque<api::VmKey> ready_;  // guarded by mu_
  // Keys to hand out (client-go's dirty set): those in ready_, plus those
  // processing that were added again. Maps to when the key became pending.
  std::unordered_map<api::VmKey, MonotonicTime, api::VmKeyHash> pending_;  // guarded by mu_
  // Keys handed out and not yet Done().
  std::unordered_set<api::VmKey, api::VmKeyHash> processing_;  // guarded by mu_
  // Keys waiting for a ready time; never also in pending_. The two maps are
  // the same set, indexed by key and by time.
  std::unordered_map<api::VmKey, DelayedSlot, api::VmKeyHash> delayed_;  // guarded by mu_
  std::map<DelayedSlot, api::VmKey> delayed_by_time_;                    // guarded by mu_
  uint64_t next_delayed_sequence_ = 0;                                   // guarded by mu_
  size_t reported_depth_ = 0;                                            // guarded by mu_
  bool shutting_down_ = false;                                           // guarded by mu_
};

}  // namespace vmlet::controller
