#include "controller/work_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "controller/rate_limiter.h"
#include "tests/fakes/fake_clock.h"

namespace vmlet::controller {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using testing::FakeClock;

const api::VmKey kA{"default", "a"};
const api::VmKey kB{"default", "b"};
const api::VmKey kC{"default", "c"};

// Real time that multi-thread tests allow before declaring a hang. The queue
// never waits for it; it only bounds a broken test.
constexpr seconds kHangDeadline(30);

// Runs queue.Get() on a thread of its own. The destructor shuts the queue
// down, so a test that fails cannot leave the thread blocked.
class AsyncGet {
 public:
  explicit AsyncGet(WorkQueue& queue)
      : queue_(queue), result_(std::async(std::launch::async, [&queue] { return queue.Get(); })) {}
  ~AsyncGet() { queue_.ShutDown(); }

  bool Returned() { return result_.wait_for(seconds(0)) == std::future_status::ready; }

  // Waits (up to kHangDeadline of real time) for Get() to return.
  std::optional<api::VmKey> Result() {
    if (result_.wait_for(kHangDeadline) != std::future_status::ready) {
      ADD_FAILURE() << "Get() did not return";
      queue_.ShutDown();
    }
    return result_.get();
  }

 private:
  WorkQueue& queue_;
  std::future<std::optional<api::VmKey>> result_;
};

// Waits until `n` threads are blocked in clock.WaitUntil(), which is where a
// blocked Get() waits. Spins (yielding) rather than sleeping.
[[nodiscard]] bool WaitForBlockedGets(const FakeClock& clock, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + kHangDeadline;
  while (clock.waiters() < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

class WorkQueueTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  WorkQueue queue_{clock_, NewDefaultRateLimiter()};
};

TEST_F(WorkQueueTest, TryGetOnAnEmptyQueueReturnsNothing) {
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.DelayedLen(), 0u);
}

TEST_F(WorkQueueTest, AddedKeyIsHandedOut) {
  queue_.Add(kA);
  EXPECT_EQ(queue_.Len(), 1u);

  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, KeyAddedTwiceIsHandedOutOnce) {
  queue_.Add(kA);
  queue_.Add(kA);
  EXPECT_EQ(queue_.Len(), 1u);

  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, KeysAreHandedOutInTheOrderTheyWereAdded) {
  queue_.Add(kB);
  queue_.Add(kC);
  queue_.Add(kA);
  queue_.Add(kB);  // already waiting: keeps its place

  EXPECT_EQ(queue_.TryGet(), kB);
  EXPECT_EQ(queue_.TryGet(), kC);
  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, KeyAddedWhileProcessingIsNotHandedOutAgainUntilDone) {
  queue_.Add(kA);
  ASSERT_EQ(queue_.TryGet(), kA);

  queue_.Add(kA);
  queue_.Add(kA);

  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
  queue_.Done(kA);
  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, KeyRequeuedOnDoneJoinsTheBackOfTheQueue) {
  queue_.Add(kA);
  ASSERT_EQ(queue_.TryGet(), kA);
  queue_.Add(kA);
  queue_.Add(kB);

  queue_.Done(kA);

  EXPECT_EQ(queue_.TryGet(), kB);
  EXPECT_EQ(queue_.TryGet(), kA);
}

TEST_F(WorkQueueTest, ReAddedKeyGoesToTheBackOfTheQueue) {
  queue_.Add(kA);
  queue_.Add(kB);
  ASSERT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);

  queue_.Add(kA);

  EXPECT_EQ(queue_.TryGet(), kB);
  EXPECT_EQ(queue_.TryGet(), kA);
}

TEST_F(WorkQueueTest, DoneWithoutANewAddDoesNotRequeue) {
  queue_.Add(kA);
  ASSERT_EQ(queue_.TryGet(), kA);

  queue_.Done(kA);

  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, DoneForAKeyThatIsNotProcessingChangesNothing) {
  queue_.Add(kA);

  queue_.Done(kA);
  queue_.Done(kB);

  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, DelayedKeyIsNotReadyBeforeItsDelay) {
  queue_.AddAfter(kA, milliseconds(10));
  EXPECT_EQ(queue_.TryGet(), std::nullopt);

  clock_.Advance(milliseconds(10) - nanoseconds(1));

  EXPECT_EQ(queue_.TryGet(), std::nullopt);
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.DelayedLen(), 1u);
}

TEST_F(WorkQueueTest, DelayedKeyIsReadyExactlyAtItsDelay) {
  queue_.AddAfter(kA, milliseconds(10));

  clock_.Advance(milliseconds(10));

  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, AddAfterWithoutAPositiveDelayAddsNow) {
  queue_.AddAfter(kA, nanoseconds(0));
  queue_.AddAfter(kB, milliseconds(-1));

  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), kB);
}

TEST_F(WorkQueueTest, EarlierDelayReplacesALaterOne) {
  queue_.AddAfter(kA, milliseconds(20));
  queue_.AddAfter(kA, milliseconds(5));
  EXPECT_EQ(queue_.DelayedLen(), 1u);

  clock_.Advance(milliseconds(5));
  EXPECT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);

  clock_.Advance(milliseconds(15));
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, LaterDelayDoesNotPostponeAnEarlierOne) {
  queue_.AddAfter(kA, milliseconds(5));
  queue_.AddAfter(kA, milliseconds(20));
  EXPECT_EQ(queue_.DelayedLen(), 1u);

  clock_.Advance(milliseconds(5));
  EXPECT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);

  clock_.Advance(milliseconds(15));
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, AddAfterForAReadyKeyAddsNothing) {
  queue_.Add(kA);

  queue_.AddAfter(kA, milliseconds(5));

  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);
  clock_.Advance(milliseconds(5));
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, AddMakesADelayedKeyReadyNowAndOnlyOnce) {
  queue_.AddAfter(kA, seconds(60));

  queue_.Add(kA);

  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);
  clock_.Advance(seconds(60));
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST_F(WorkQueueTest, DelayedKeysJoinTheQueueInTheOrderOfTheirReadyTimes) {
  queue_.AddAfter(kB, milliseconds(20));
  queue_.AddAfter(kA, milliseconds(10));
  clock_.Advance(milliseconds(20));

  // Both became ready before kC was added, although nothing looked yet.
  queue_.Add(kC);

  EXPECT_EQ(queue_.TryGet(), kA);
  EXPECT_EQ(queue_.TryGet(), kB);
  EXPECT_EQ(queue_.TryGet(), kC);
}

TEST_F(WorkQueueTest, DelayedKeyThatComesDueWhileProcessingIsRequeuedOnDone) {
  queue_.Add(kA);
  ASSERT_EQ(queue_.TryGet(), kA);
  queue_.AddAfter(kA, milliseconds(5));

  clock_.Advance(milliseconds(5));

  EXPECT_EQ(queue_.TryGet(), std::nullopt);
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.DelayedLen(), 0u);
  queue_.Done(kA);
  EXPECT_EQ(queue_.TryGet(), kA);
}

TEST_F(WorkQueueTest, LenCountsReadyKeysAndDelayedLenCountsKeysStillWaiting) {
  queue_.Add(kA);
  queue_.AddAfter(kB, milliseconds(10));
  queue_.AddAfter(kC, milliseconds(20));
  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.DelayedLen(), 2u);

  clock_.Advance(milliseconds(10));
  EXPECT_EQ(queue_.Len(), 2u);
  EXPECT_EQ(queue_.DelayedLen(), 1u);

  ASSERT_EQ(queue_.TryGet(), kA);  // processing keys count in neither
  EXPECT_EQ(queue_.Len(), 1u);
  EXPECT_EQ(queue_.DelayedLen(), 1u);
}

TEST_F(WorkQueueTest, AddRateLimitedWaitsTheLimitersBackoff) {
  for (nanoseconds backoff : {milliseconds(5), milliseconds(10), milliseconds(20)}) {
    queue_.AddRateLimited(kA);
    clock_.Advance(backoff - nanoseconds(1));
    EXPECT_EQ(queue_.TryGet(), std::nullopt) << "backoff " << backoff.count() << " ns";
    clock_.Advance(nanoseconds(1));
    EXPECT_EQ(queue_.TryGet(), kA) << "backoff " << backoff.count() << " ns";
    queue_.Done(kA);
  }
  EXPECT_EQ(queue_.NumRequeues(kA), 3);
}

TEST_F(WorkQueueTest, ForgetRestartsTheBackoff) {
  queue_.AddRateLimited(kA);
  queue_.AddRateLimited(kA);
  EXPECT_EQ(queue_.NumRequeues(kA), 2);

  queue_.Forget(kA);

  EXPECT_EQ(queue_.NumRequeues(kA), 0);
  // Forget does not remove the key: it still waits for its first backoff.
  EXPECT_EQ(queue_.DelayedLen(), 1u);
  clock_.Advance(milliseconds(5));
  ASSERT_EQ(queue_.TryGet(), kA);
  queue_.Done(kA);
  queue_.AddRateLimited(kA);
  clock_.Advance(milliseconds(5));
  EXPECT_EQ(queue_.TryGet(), kA);
}

TEST_F(WorkQueueTest, AddsAfterShutDownAreIgnored) {
  queue_.ShutDown();

  queue_.Add(kA);
  queue_.AddAfter(kB, milliseconds(1));
  queue_.AddRateLimited(kC);
  clock_.Advance(seconds(1));

  EXPECT_TRUE(queue_.ShuttingDown());
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
  EXPECT_EQ(AsyncGet(queue_).Result(), std::nullopt);  // without blocking
}

TEST_F(WorkQueueTest, ShutDownHandsOutReadyKeysAndDropsDelayedOnes) {
  queue_.Add(kA);
  queue_.AddAfter(kB, milliseconds(1));

  queue_.ShutDown();
  clock_.Advance(milliseconds(1));

  EXPECT_EQ(queue_.DelayedLen(), 0u);
  EXPECT_EQ(AsyncGet(queue_).Result(), kA);
  EXPECT_EQ(AsyncGet(queue_).Result(), std::nullopt);
}

TEST_F(WorkQueueTest, KeyAddedWhileProcessingIsStillHandedOutAfterShutDown) {
  queue_.Add(kA);
  ASSERT_EQ(queue_.TryGet(), kA);
  queue_.Add(kA);
  queue_.ShutDown();

  queue_.Done(kA);

  EXPECT_EQ(AsyncGet(queue_).Result(), kA);
  queue_.Done(kA);
  EXPECT_EQ(AsyncGet(queue_).Result(), std::nullopt);
}

TEST_F(WorkQueueTest, BlockedGetReturnsAKeyAddedByAnotherThread) {
  AsyncGet get(queue_);
  ASSERT_TRUE(WaitForBlockedGets(clock_, 1));
  EXPECT_FALSE(get.Returned());

  queue_.Add(kA);

  EXPECT_EQ(get.Result(), kA);
}

TEST_F(WorkQueueTest, BlockedGetReturnsWhenTheClockReachesADelayedKey) {
  queue_.AddAfter(kA, milliseconds(10));
  AsyncGet get(queue_);
  ASSERT_TRUE(WaitForBlockedGets(clock_, 1));

  clock_.Advance(milliseconds(10) - nanoseconds(1));
  EXPECT_FALSE(get.Returned());
  EXPECT_EQ(clock_.waiters(), 1u);
  clock_.Advance(nanoseconds(1));

  EXPECT_EQ(get.Result(), kA);
}

TEST_F(WorkQueueTest, BlockedGetWakesForADelayedKeyEarlierThanTheOneItWaitsFor) {
  queue_.AddAfter(kA, hours(1));
  AsyncGet get(queue_);
  ASSERT_TRUE(WaitForBlockedGets(clock_, 1));

  queue_.AddAfter(kB, milliseconds(1));
  clock_.Advance(milliseconds(1));

  EXPECT_EQ(get.Result(), kB);
}

TEST_F(WorkQueueTest, BlockedGetsReturnNothingOnShutDown) {
  queue_.AddAfter(kA, hours(1));
  AsyncGet first(queue_);
  AsyncGet second(queue_);
  ASSERT_TRUE(WaitForBlockedGets(clock_, 2));

  queue_.ShutDown();

  EXPECT_EQ(first.Result(), std::nullopt);
  EXPECT_EQ(second.Result(), std::nullopt);
}

TEST_F(WorkQueueTest, NoKeyIsProcessedByTwoWorkersAtOnce) {
  constexpr int kWorkers = 8;
  constexpr int kHandOuts = 2000;
  const std::array<api::VmKey, 4> keys = {kA, kB, kC, api::VmKey{"other", "a"}};
  std::array<std::atomic<bool>, keys.size()> in_progress{};
  std::array<std::atomic<int>, keys.size()> handed_out{};
  std::atomic<int> total_handed_out{0};
  std::atomic<int> overlaps{0};
  auto index = [&](const api::VmKey& key) {
    return static_cast<size_t>(std::find(keys.begin(), keys.end(), key) - keys.begin());
  };
  auto begin = [&](const api::VmKey& key) {
    if (in_progress[index(key)].exchange(true)) ++overlaps;
    ++handed_out[index(key)];
    ++total_handed_out;
  };
  auto end = [&](const api::VmKey& key) {
    in_progress[index(key)] = false;
    queue_.Done(key);
  };

  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::minstd_rand rng(w + 1);
      while (std::optional<api::VmKey> key = queue_.Get()) {
        begin(*key);
        if (rng() % 2 == 0) queue_.Add(*key);  // added again while processing
        if (rng() % 4 == 0) queue_.Add(keys[rng() % keys.size()]);
        // Take every other ready key while holding the first: were the first
        // handed out again, this thread would catch it whatever the
        // scheduling.
        std::vector<api::VmKey> more;
        while (std::optional<api::VmKey> other = queue_.TryGet()) {
          begin(*other);
          more.push_back(*other);
        }
        for (const api::VmKey& other : more) end(other);
        end(*key);
      }
    });
  }
  // Keep adding until the workers have handed out kHandOuts keys while adds
  // were still accepted.
  std::minstd_rand rng(0);
  const auto deadline = std::chrono::steady_clock::now() + kHangDeadline;
  for (int i = 0; total_handed_out < kHandOuts; ++i) {
    if (i % 1024 == 0 && std::chrono::steady_clock::now() > deadline) {
      ADD_FAILURE() << "the workers handed out only " << total_handed_out << " keys";
      break;
    }
    const api::VmKey& key = keys[rng() % keys.size()];
    if (rng() % 4 == 0) {
      queue_.AddAfter(key, milliseconds(1));
    } else {
      queue_.Add(key);
    }
    if (i % 16 == 0) clock_.Advance(milliseconds(1));
  }
  // Later adds are ignored, so the workers drain the ready keys and stop.
  queue_.ShutDown();
  for (std::thread& worker : workers) worker.join();

  EXPECT_EQ(overlaps.load(), 0);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_GT(handed_out[i].load(), 0) << keys[i];
  EXPECT_EQ(queue_.Len(), 0u);
  EXPECT_EQ(queue_.TryGet(), std::nullopt);
}

TEST(WorkQueueMetricsTest, HooksReportDepthAddsRetriesAndQueueDuration) {
  FakeClock clock;
  std::vector<size_t> depths;
  int adds = 0;
  int retries = 0;
  std::vector<double> durations;
  WorkQueue queue(clock, NewDefaultRateLimiter(),
                  WorkQueueMetrics{
                      .depth = [&](size_t depth) { depths.push_back(depth); },
                      .add = [&] { ++adds; },
                      .retry = [&] { ++retries; },
                      .queue_duration = [&](double seconds) { durations.push_back(seconds); },
                  });

  queue.Add(kA);  // depth 1
  queue.Add(kA);  // deduplicated: not counted
  queue.Add(kB);  // depth 2
  clock.Advance(seconds(3));
  ASSERT_EQ(queue.TryGet(), kA);  // waited 3 s; depth 1
  queue.Add(kA);                  // pending again while processing; depth stays 1
  queue.AddRateLimited(kC);       // a retry, not yet an add
  clock.Advance(milliseconds(5));
  ASSERT_EQ(queue.TryGet(), kB);  // kC joins (add), kB leaves: depth stays 1
  queue.Done(kA);                 // kA requeued: depth 2
  ASSERT_EQ(queue.TryGet(), kC);  // ready since the 5 ms passed; depth 1
  ASSERT_EQ(queue.TryGet(), kA);  // pending since its Add 5 ms ago; depth 0

  EXPECT_EQ(depths, (std::vector<size_t>{1, 2, 1, 2, 1, 0}));
  EXPECT_EQ(adds, 4);
  EXPECT_EQ(retries, 1);
  ASSERT_EQ(durations.size(), 4u);
  EXPECT_DOUBLE_EQ(durations[0], 3.0);
  EXPECT_DOUBLE_EQ(durations[1], 3.005);
  EXPECT_DOUBLE_EQ(durations[2], 0.0);
  EXPECT_DOUBLE_EQ(durations[3], 0.005);
}

}  // namespace
}  // namespace vmlet::controller

namespace vmlet::controller {
namespace {

// Regression: Done() promoted the key's own due delay (queueing it) and then
// requeued it again as "added while processing", so two workers got it.
TEST(WorkQueueRegressionTest, KeyDelayedAndDueWhenDoneIsQueuedOnce) {
  testing::FakeClock clock;
  WorkQueue queue(clock, NewDefaultRateLimiter());
  const api::VmKey key{"ns", "a"};
  queue.Add(key);
  ASSERT_EQ(queue.TryGet(), key);
  queue.AddAfter(key, std::chrono::milliseconds(1));  // delayed while processing
  clock.Advance(std::chrono::milliseconds(1));        // and due before Done
  queue.Done(key);

  EXPECT_EQ(queue.Len(), 1u);
  EXPECT_EQ(queue.TryGet(), key);
  EXPECT_EQ(queue.TryGet(), std::nullopt);
}

}  // namespace
}  // namespace vmlet::controller
