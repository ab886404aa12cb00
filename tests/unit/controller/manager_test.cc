#include "controller/manager.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "controller/state_store.h"
#include "drivers/fake/fake_vm_driver.h"
#include "drivers/vmm_identity.h"
#include "manifests/directory_source.h"
#include "manifests/spec_json.h"
#include "tests/fakes/fake_clock.h"
#include "tests/support/temp_dir.h"

namespace vmlet::controller {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using namespace std::chrono_literals;

// A manifest watcher the test drives: Publish() hands the manager an update
// as the directory watcher would.
class FakeManifestWatcher final : public ManifestWatcher {
 public:
  struct State {
    std::mutex mu;
    Listener listener;  // guarded by mu
    bool started = false;
    bool stopped = false;
  };

  explicit FakeManifestWatcher(std::shared_ptr<State> state) : state_(std::move(state)) {}

  api::Status Start(Listener listener) override {
    std::lock_guard lock(state_->mu);
    state_->listener = std::move(listener);
    state_->started = true;
    return api::Status::Ok();
  }
  void Stop() override {
    std::lock_guard lock(state_->mu);
    state_->listener = nullptr;
    state_->stopped = true;
  }

 private:
  std::shared_ptr<State> state_;
};

// A rate limiter that answers every failure with the same delay and records
// the keys it was asked about.
class FixedDelayRateLimiter final : public RateLimiter {
 public:
  struct State {
    std::mutex mu;
    std::vector<api::VmKey> failures;    // guarded by mu
    std::map<api::VmKey, int> requeues;  // guarded by mu
  };

  FixedDelayRateLimiter(std::chrono::nanoseconds delay, std::shared_ptr<State> state)
      : delay_(delay), state_(std::move(state)) {}

  std::chrono::nanoseconds When(const api::VmKey& key) override {
    std::lock_guard lock(state_->mu);
    state_->failures.push_back(key);
    ++state_->requeues[key];
    return delay_;
  }
  void Forget(const api::VmKey& key) override {
    std::lock_guard lock(state_->mu);
    state_->requeues.erase(key);
  }
  int NumRequeues(const api::VmKey& key) const override {
    std::lock_guard lock(state_->mu);
    auto it = state_->requeues.find(key);
    return it == state_->requeues.end() ? 0 : it->second;
  }

 private:
  const std::chrono::nanoseconds delay_;
  std::shared_ptr<State> state_;
};

constexpr std::chrono::nanoseconds kRetryDelay = 7s;
constexpr std::chrono::nanoseconds kResync = 60s;

class ManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<StateStore>(dir_ + "/state", clock_);
    fake_ = std::make_unique<drivers::FakeVmDriver>(
        clock_, drivers::FakeVmDriver::Options{dir_ + "/fake.jsonl", "boot-1", 0ms, 0ms});
    ASSERT_TRUE(fake_->Load().ok());
    identity_ = std::make_unique<drivers::VmmIdentity>(fake_->proc_fs());

    Manager::Options options;
    options.manifests_dir = dir_ + "/manifests";
    options.node_name = "node-a";
    options.workers = 2;
    options.resync = kResync;
    Manager::Collaborators collaborators;
    collaborators.manifests = std::make_unique<FakeManifestWatcher>(watcher_);
    collaborators.rate_limiter = std::make_unique<FixedDelayRateLimiter>(kRetryDelay, limiter_);
    collaborators.jitter = [] { return 1.0; };
    ManagerHooks hooks;
    hooks.resynced = [this] {
      std::lock_guard lock(mu_);
      ++resyncs_;
      cv_.notify_all();
    };
    manager_ = std::make_unique<Manager>(
        options, clock_, *store_,
        std::map<std::string, DriverSlot>{{"fake", {fake_.get(), identity_.get()}}},
        std::move(collaborators), ReconcilerHooks{}, WorkQueueMetrics{}, std::move(hooks));
    manager_->SetPassObserver([this](const api::VmKey& key, const api::Status& outcome) {
      std::lock_guard lock(mu_);
      passes_.push_back({key, outcome});
      cv_.notify_all();
    });
  }

  void TearDown() override {
    manager_.reset();
    identity_.reset();
    fake_.reset();
  }

  static api::VmSpec Spec(const std::string& name) {
    api::VmSpec spec;
    spec.name = name;
    spec.ns = "prod";
    spec.driver = "fake";
    spec.kernel = "/var/lib/vmlet/images/vmlinuz";
    return spec;
  }

  // The watcher's next full scan: these VMs' manifests, all valid.
  void Publish(const std::vector<api::VmSpec>& specs) {
    auto snapshot = std::make_shared<manifests::Snapshot>();
    manifests::SourceUpdate update;
    for (const api::VmSpec& spec : specs) {
      snapshot->vms[spec.key()] = std::make_shared<const manifests::DesiredVm>(manifests::DesiredVm{
          spec, manifests::BootHash(spec), {"/m/" + spec.name + ".yaml", 1, 1}});
      update.diff.added.push_back(spec.key());
    }
    update.snapshot = snapshot;
    ManifestWatcher::Listener listener;
    {
      std::lock_guard lock(watcher_->mu);
      listener = watcher_->listener;
    }
    ASSERT_TRUE(listener) << "the manager has not started its watcher";
    listener(update);
  }

  // Waits (with a deadline, never a fixed sleep) until `n` passes are done.
  // The workers run on real threads; fake time moves only when told.
  bool WaitForPasses(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return passes_.size() >= n; });
  }
  bool WaitForResyncs(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return resyncs_ >= n; });
  }
  std::vector<api::Status> Outcomes(const api::VmKey& key) {
    std::lock_guard lock(mu_);
    std::vector<api::Status> out;
    for (const auto& [k, s] : passes_) {
      if (k == key) out.push_back(s);
    }
    return out;
  }

  vmlet::testing::FakeClock clock_;
  const vmlet::testing::TempDir tmp_{"manager"};
  const std::string dir_ = tmp_.path();
  std::unique_ptr<StateStore> store_;
  std::unique_ptr<drivers::FakeVmDriver> fake_;
  std::unique_ptr<drivers::VmmIdentity> identity_;
  std::shared_ptr<FakeManifestWatcher::State> watcher_ =
      std::make_shared<FakeManifestWatcher::State>();
  std::shared_ptr<FixedDelayRateLimiter::State> limiter_ =
      std::make_shared<FixedDelayRateLimiter::State>();
  std::unique_ptr<Manager> manager_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::pair<api::VmKey, api::Status>> passes_;  // guarded by mu_
  int resyncs_ = 0;                                         // guarded by mu_
};

TEST_F(ManagerTest, StartStartsTheWatcherAndStopStopsIt) {
  ASSERT_TRUE(manager_->Start().ok());
  EXPECT_TRUE(watcher_->started);
  EXPECT_FALSE(manager_->synced());
  manager_->Stop();
  EXPECT_TRUE(watcher_->stopped);
}

TEST_F(ManagerTest, TheFirstScanBootsEveryWantedVmThroughTheWorkers) {
  ASSERT_TRUE(manager_->Start().ok());
  Publish({Spec("web"), Spec("db")});
  EXPECT_TRUE(manager_->synced());
  // Each VM: a pass that boots it (requeued at once), then one that sees it.
  ASSERT_TRUE(WaitForPasses(4));
  EXPECT_EQ(fake_->BootCount(Spec("web").key()), 1);
  EXPECT_EQ(fake_->BootCount(Spec("db").key()), 1);
  ASSERT_TRUE(WaitForResyncs(1));  // the first full scan enqueues everything once more
}

TEST_F(ManagerTest, AFailedPassIsRetriedAfterTheRateLimitersDelayOnTheClock) {
  const api::VmKey key = Spec("web").key();
  drivers::FakeFaults faults;
  faults.fail_boots = 1;
  fake_->SetFaults(key, faults);
  ASSERT_TRUE(manager_->Start().ok());
  // The first full scan, with no VM yet: the enqueue of every key that follows
  // it is over before the VM comes, so nothing but the limiter's delay can
  // bring its retry (an Add makes a key waiting out a backoff ready at once).
  Publish({});
  ASSERT_TRUE(WaitForResyncs(1));
  Publish({Spec("web")});

  ASSERT_TRUE(WaitForPasses(1));
  EXPECT_EQ(Outcomes(key).front(), api::Status::Unavailable("injected boot failure"));
  {
    std::lock_guard lock(limiter_->mu);
    EXPECT_THAT(limiter_->failures, ElementsAre(key));
  }
  // The retry waits for the limiter's delay on the manager's clock.
  const size_t before = Outcomes(key).size();
  EXPECT_EQ(fake_->BootCount(key), 0);
  clock_.Advance(kRetryDelay);
  ASSERT_TRUE(WaitForPasses(before + 1));
  std::unique_lock lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return fake_->BootCount(key) == 1; }));
}

TEST_F(ManagerTest, EveryKnownVmIsEnqueuedAgainEachResyncPeriod) {
  ASSERT_TRUE(manager_->Start().ok());
  Publish({Spec("web")});
  ASSERT_TRUE(WaitForResyncs(1));  // after the first full scan
  // The resync thread waits a period on the manager's clock; nothing comes
  // before fake time moves. (It may not be waiting yet when time first
  // moves: move it a period at a time until it has run.)
  {
    std::unique_lock lock(mu_);
    EXPECT_FALSE(cv_.wait_for(lock, 50ms, [&] { return resyncs_ >= 2; }));
  }
  for (int i = 0; i < 100; ++i) {
    clock_.Advance(kResync);
    std::unique_lock lock(mu_);
    if (cv_.wait_for(lock, 100ms, [&] { return resyncs_ >= 2; })) break;
  }
  EXPECT_TRUE(WaitForResyncs(2));
}

TEST_F(ManagerTest, StopLeavesTheVmmsRunning) {
  const api::VmKey key = Spec("web").key();
  ASSERT_TRUE(manager_->Start().ok());
  Publish({Spec("web")});
  std::unique_lock lock(mu_);
  ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return fake_->BootCount(key) == 1; }));
  lock.unlock();
  manager_->Stop();
  ASSERT_TRUE(store_->LoadRecord(key).ok());
  std::optional<VmRecord> record = store_->LoadRecord(key)->record;
  ASSERT_TRUE(record && record->vmm);
  EXPECT_TRUE(fake_->proc_fs().ReadProcess(record->vmm->process.pid).ok());
}

}  // namespace
}  // namespace vmlet::controller
