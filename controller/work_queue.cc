#include "controller/work_queue.h"

#include <iterator>
#include <limits>
#include <utility>

namespace vmlet::controller {

WorkQueue::WorkQueue(api::Clock& clock, RateLimiterPtr limiter, WorkQueueMetrics metrics)
    : clock_(clock), limiter_(std::move(limiter)), metrics_(std::move(metrics)) {}

WorkQueue::~WorkQueue() = default;

void WorkQueue::Add(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  if (shutting_down_) return;
  const MonotonicTime now = clock_.MonotonicNow();
  // Keys already due go first: they became ready before this one.
  PromoteDueLocked(now);
  AddLocked(key, now);
  ReportDepthLocked();
}

void WorkQueue::AddAfter(const api::VmKey& key, std::chrono::nanoseconds delay) {
  std::lock_guard lock(mu_);
  if (shutting_down_) return;
  const MonotonicTime now = clock_.MonotonicNow();
  PromoteDueLocked(now);
  if (delay <= std::chrono::nanoseconds::zero()) {
    AddLocked(key, now);
  } else if (!pending_.contains(key)) {  // a pending key is due sooner already
    const MonotonicTime ready_at =
        delay >= MonotonicTime::max() - now ? MonotonicTime::max() : now + delay;
    auto it = delayed_.find(key);
    if (it == delayed_.end() || ready_at < it->second.first) {
      EraseDelayedLocked(key);
      const DelayedSlot slot{ready_at, next_delayed_sequence_++};
      delayed_.emplace(key, slot);
      delayed_by_time_.emplace(slot, key);
      // A blocked Get() may be waiting for a later time than this one.
      cv_.notify_all();
    }
  }
  ReportDepthLocked();
}

void WorkQueue::AddRateLimited(const api::VmKey& key) {
  const std::chrono::nanoseconds delay = limiter_->When(key);
  {
    std::lock_guard lock(mu_);
    if (shutting_down_) return;
    if (metrics_.retry) metrics_.retry();
  }
  AddAfter(key, delay);
}

void WorkQueue::Forget(const api::VmKey& key) { limiter_->Forget(key); }

int WorkQueue::NumRequeues(const api::VmKey& key) const { return limiter_->NumRequeues(key); }

std::optional<api::VmKey> WorkQueue::Get() {
  std::unique_lock lock(mu_);
  while (true) {
    const MonotonicTime now = clock_.MonotonicNow();
    PromoteDueLocked(now);
    if (!ready_.empty()) return PopLocked(now);
    if (shutting_down_) return std::nullopt;
    // Wait for a key to become ready, for the earliest delayed key's time,
    // for an earlier delayed key, or for shutdown; then look again.
    const MonotonicTime deadline =
        delayed_by_time_.empty() ? MonotonicTime::max() : delayed_by_time_.begin()->first.first;
    clock_.WaitUntil(cv_, lock, deadline, [this, deadline] {
      return shutting_down_ || !ready_.empty() ||
             (!delayed_by_time_.empty() && delayed_by_time_.begin()->first.first < deadline);
    });
  }
}

std::optional<api::VmKey> WorkQueue::TryGet() {
  std::lock_guard lock(mu_);
  const MonotonicTime now = clock_.MonotonicNow();
  PromoteDueLocked(now);
  return PopLocked(now);
}

void WorkQueue::Done(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  if (processing_.erase(key) == 0) return;
  // Requeue a key added while it was processed before promoting delayed
  // keys: promoting this very key now queues it (it is no longer
  // processing), and requeueing after that would queue it twice and hand it
  // to two workers.
  if (pending_.contains(key)) {
    ready_.push_back(key);
    cv_.notify_one();
  }
  PromoteDueLocked(clock_.MonotonicNow());
  ReportDepthLocked();
}

void WorkQueue::ShutDown() {
  std::lock_guard lock(mu_);
  shutting_down_ = true;
  delayed_.clear();
  delayed_by_time_.clear();
  cv_.notify_all();
}

bool WorkQueue::ShuttingDown() const {
  std::lock_guard lock(mu_);
  return shutting_down_;
}

size_t WorkQueue::Len() const {
  std::lock_guard lock(mu_);
  const MonotonicTime now = clock_.MonotonicNow();
  size_t len = ready_.size();
  // Due keys not yet promoted count as they will once promoted.
  for (const auto& [due, key] : delayed_by_time_) {
    if (due.first > now) break;
    if (!processing_.contains(key)) ++len;
  }
  return len;
}

size_t WorkQueue::DelayedLen() const {
  std::lock_guard lock(mu_);
  const MonotonicTime now = clock_.MonotonicNow();
  // Keys are ordered by due time: those after `now` are the delayed ones.
  const auto first_not_due =
      delayed_by_time_.upper_bound({now, std::numeric_limits<uint64_t>::max()});
  return static_cast<size_t>(std::distance(first_not_due, delayed_by_time_.end()));
}

void WorkQueue::AddLocked(const api::VmKey& key, MonotonicTime since) {
  if (pending_.contains(key)) return;
  EraseDelayedLocked(key);
  pending_.emplace(key, since);
  if (metrics_.add) metrics_.add();
  if (processing_.contains(key)) return;  // Done() requeues it
  ready_.push_back(key);
  cv_.notify_one();
}

void WorkQueue::PromoteDueLocked(MonotonicTime now) {
  while (!delayed_by_time_.empty() && delayed_by_time_.begin()->first.first <= now) {
    auto it = delayed_by_time_.begin();
    const MonotonicTime ready_at = it->first.first;
    const api::VmKey key = it->second;
    EraseDelayedLocked(key);
    AddLocked(key, ready_at);
  }
}

std::optional<api::VmKey> WorkQueue::PopLocked(MonotonicTime now) {
  if (ready_.empty()) return std::nullopt;
  api::VmKey key = std::move(ready_.front());
  ready_.pop_front();
  auto it = pending_.find(key);
  const MonotonicTime since = it->second;
  pending_.erase(it);
  processing_.insert(key);
  if (metrics_.queue_duration) {
    metrics_.queue_duration(std::chrono::duration<double>(now - since).count());
  }
  ReportDepthLocked();
  return key;
}

void WorkQueue::EraseDelayedLocked(const api::VmKey& key) {
  auto it = delayed_.find(key);
  if (it == delayed_.end()) return;
  delayed_by_time_.erase(it->second);
  delayed_.erase(it);
}

void WorkQueue::ReportDepthLocked() {
  if (ready_.size() == reported_depth_) return;
  reported_depth_ = ready_.size();
  if (metrics_.depth) metrics_.depth(reported_depth_);
}

}  // namespace vmlet::controller
