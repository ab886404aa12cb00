#include "controller/reconciler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "controller/desired_cache.h"
#include "controller/state_store.h"
#include "drivers/fake/fake_vm_driver.h"
#include "drivers/vmm_identity.h"
#include "manifests/directory_source.h"
#include "manifests/spec_json.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_proc_fs.h"
#include "tests/support/temp_dir.h"

namespace vmlet::controller {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::StartsWith;
using namespace std::chrono_literals;

namespace fs = std::filesystem;

// 2026-11-28T00:00:00Z, where FakeClock's wall time starts.
const WallTime kT0 = WallTime(std::chrono::seconds(1795824000));

constexpr char kBootId[] = "boot-1";
constexpr milliseconds kBootDelay = 2s;
constexpr milliseconds kShutdownDelay = 1s;
// The fake driver's first VMM: pid 400000, and the IP it derives from it.
constexpr pid_t kFirstPid = 400000;
constexpr char kFirstIp[] = "10.106.26.128";

// What a pass asked of the work queue, compared exactly and printed readably.
struct Requeue {
  std::optional<nanoseconds> after;  // none: only when something changes

  friend bool operator==(const Requeue&, const Requeue&) = default;
  friend void PrintTo(const Requeue& r, std::ostream* os) {
    if (r.after) {
      *os << "requeue after " << r.after->count() << "ns";
    } else {
      *os << "idle";
    }
  }
};

const Requeue kIdle{};
const Requeue kNow{0ns};
Requeue After(nanoseconds d) { return Requeue{d}; }

// The reconciler over real collaborators: a state store in a temporary
// directory, the fake driver (boot delay 2 s, shutdown delay 1 s) with
// identity checks through its process table, and a desired-state cache fed
// as the directory source feeds it. Nothing sleeps: the FakeClock moves only
// when a test (or Converge) says so.
// The fake driver, with Boot() errors a test sets: `boot_error` fails every
// Boot() call with it while set. Everything else is the fake's.
class BootErrorDriver final : public drivers::VmDriver {
 public:
  explicit BootErrorDriver(drivers::FakeVmDriver& fake) : fake_(fake) {}

  std::optional<api::Status> boot_error;
  int boot_calls = 0;

  std::string_view name() const override { return fake_.name(); }
  std::vector<api::FieldError> CheckSpec(const api::VmSpec& spec) const override {
    return fake_.CheckSpec(spec);
  }
  api::StatusOr<drivers::BootResult> Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                          drivers::Deadline deadline) override {
    ++boot_calls;
    if (boot_error) return *boot_error;
    return fake_.Boot(spec, vm_dir, deadline);
  }
  api::StatusOr<drivers::Observation> Observe(const drivers::ConfirmedVmm& vmm,
                                              drivers::Deadline deadline) override {
    return fake_.Observe(vmm, deadline);
  }
  api::Status Pause(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return fake_.Pause(vmm, deadline);
  }
  api::Status Resume(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return fake_.Resume(vmm, deadline);
  }
  api::Status Shutdown(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return fake_.Shutdown(vmm, deadline);
  }
  api::Status Kill(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return fake_.Kill(vmm, deadline);
  }
  drivers::VmmExit ExitState(const drivers::VmmHandle& handle) override {
    return fake_.ExitState(handle);
  }
  api::Status Cleanup(const drivers::VmmHandle& handle, drivers::Deadline deadline) override {
    return fake_.Cleanup(handle, deadline);
  }
  api::StatusOr<std::optional<drivers::VmmHandle>> Rediscover(const std::string& vm_dir) override {
    return fake_.Rediscover(vm_dir);
  }
  const drivers::ProcFs& proc_fs() const override { return fake_.proc_fs(); }
  void SetChangeListener(ChangeListener listener) override {
    fake_.SetChangeListener(std::move(listener));
  }

 private:
  drivers::FakeVmDriver& fake_;
};

class ReconcilerTest : public ::testing::Test {
 protected:
  struct PhaseChange {
    api::VmKey key;
    std::string from;
    std::string to;
    double seconds;
  };

  // What one vmlet process holds. A restart drops it and builds it again over
  // the same state directory and fake-driver files (the fake's VMMs, like
  // real ones, outlive vmlet). Two drivers: "fake" and "fake-b".
  struct Vmlet {
    Vmlet(ReconcilerTest& test, milliseconds boot_delay)
        : store(test.state_dir_, test.clock_),
          fake(test.clock_, {test.state_dir_ + "/fake.jsonl", kBootId, boot_delay, kShutdownDelay}),
          fake_b(test.clock_,
                 {test.state_dir_ + "/fake-b.jsonl", kBootId, boot_delay, kShutdownDelay}),
          identity(fake.proc_fs()),
          identity_b(fake_b.proc_fs()),
          reconciler(
              test.clock_, desired, store,
              {{"fake", {&fake_boots, &identity}}, {"fake-b", {&fake_b, &identity_b}}},
              Reconciler::Options{}, [] { return 1.0; }, test.Hooks()) {}

    StateStore store;
    DesiredCache desired{"node-a"};
    drivers::FakeVmDriver fake;
    drivers::FakeVmDriver fake_b;
    BootErrorDriver fake_boots{fake};  // "fake" as the reconciler sees it
    drivers::VmmIdentity identity;
    drivers::VmmIdentity identity_b;
    Reconciler reconciler;
  };

  void SetUp() override {
    state_dir_ = dir_ + "/state";
    StartVmlet();
  }

  void TearDown() override { vmlet_.reset(); }

  // --- vmlet -----------------------------------------------------------------

  // `read_manifests`: the directory source has published its first scan.
  void StartVmlet(bool read_manifests = true) {
    vmlet_ = std::make_unique<Vmlet>(*this, boot_delay_);
    ASSERT_TRUE(vmlet_->store.Init().ok());
    ASSERT_TRUE(vmlet_->fake.Load().ok());
    ASSERT_TRUE(vmlet_->fake_b.Load().ok());
    published_.reset();
    if (read_manifests) Publish();
  }

  // vmlet exits and starts again; the VMMs and the state directory stay.
  void RestartVmlet(bool read_manifests = true) {
    vmlet_.reset();
    StartVmlet(read_manifests);
  }

  // Only before any VM exists: the fake driver's boot delay.
  void UseBootDelay(milliseconds boot_delay) {
    boot_delay_ = boot_delay;
    RestartVmlet();
  }

  ReconcilerHooks Hooks() {
    ReconcilerHooks hooks;
    hooks.identity_mismatch = [this](const std::string& driver) { mismatches_.push_back(driver); };
    hooks.boot_duration = [this](const std::string& driver, double seconds) {
      boot_durations_.emplace_back(driver, seconds);
    };
    hooks.restarted = [this](const api::VmKey& key, const std::string& reason) {
      restarts_.emplace_back(key, reason);
    };
    hooks.phase_changed = [this](const api::VmKey& key, const std::string&, const std::string& from,
                                 const std::string& to, double seconds) {
      phase_changes_.push_back({key, from, to, seconds});
    };
    hooks.forgotten = [this](const api::VmKey& key) { forgotten_.push_back(key); };
    hooks.event = [this](const api::VmKey& key, const Event& event) {
      events_.emplace_back(key, event);
    };
    return hooks;
  }

  Reconciler& reconciler() { return vmlet_->reconciler; }
  StateStore& store() { return vmlet_->store; }
  drivers::FakeVmDriver& fake() { return vmlet_->fake; }
  drivers::FakeVmDriver& fake_b() { return vmlet_->fake_b; }
  BootErrorDriver& boot_errors() { return vmlet_->fake_boots; }

  // --- desired state, as the directory source publishes it -------------------

  static api::VmSpec Spec(const std::string& name = "web") {
    api::VmSpec spec;
    spec.name = name;
    spec.ns = "prod";
    spec.driver = "fake";
    spec.kernel = "/var/lib/vmlet/images/vmlinuz";
    return spec;
  }

  // The manifest of `spec` is (now) valid and says this.
  api::VmKey Want(const api::VmSpec& spec) {
    manifests_[spec.key()] = spec;
    invalid_.erase(spec.key());
    Publish();
    return spec.key();
  }

  void SetDesiredState(const api::VmKey& key, api::DesiredState state) {
    api::VmSpec spec = manifests_.at(key);
    spec.desired_state = state;
    Want(spec);
  }

  // The manifest file is removed.
  void Delete(const api::VmKey& key) {
    manifests_.erase(key);
    invalid_.erase(key);
    Publish();
  }

  // The manifest is broken now: the VM keeps its last good spec, if any.
  void MarkInvalid(const api::VmKey& key, manifests::ManifestError error) {
    invalid_[key] = std::move(error);
    Publish();
  }

  void MarkValid(const api::VmKey& key) {
    invalid_.erase(key);
    Publish();
  }

  static manifests::ManifestError CpusError(const api::VmKey& key) {
    return {{"/etc/vmlet/manifests/web.yaml", 7, 9},
            "spec.cpus",
            "must be at least 1",
            manifests::ErrorKind::kInvalidValue,
            key};
  }

  void Publish() {
    auto snapshot = std::make_shared<manifests::Snapshot>();
    manifests::SourceUpdate update;
    for (const auto& [key, spec] : manifests_) {
      auto vm = std::make_shared<const manifests::DesiredVm>(manifests::DesiredVm{
          spec, manifests::BootHash(spec), {"/etc/vmlet/manifests/" + key.name + ".yaml", 1, 1}});
      snapshot->vms[key] = vm;
      if (!published_ || !published_->vms.contains(key)) {
        update.diff.added.push_back(key);
      } else if (!(*published_->vms.at(key) == *vm)) {
        update.diff.changed.push_back(key);
      }
    }
    if (published_) {
      for (const auto& [key, vm] : published_->vms) {
        if (!snapshot->vms.contains(key)) update.diff.removed.push_back(key);
      }
    }
    update.snapshot = snapshot;
    update.invalid = invalid_;
    (void)vmlet_->desired.Apply(update);
    published_ = std::move(snapshot);
  }

  // --- passes ------------------------------------------------------------------

  // One pass that must succeed.
  Requeue Pass(const api::VmKey& key) {
    api::StatusOr<ReconcileResult> result = reconciler().Reconcile(key);
    EXPECT_TRUE(result.ok()) << "reconcile of " << key << " failed: " << result.status();
    if (!result.ok()) return Requeue{-1ns};
    return Requeue{result->requeue_after};
  }

  // Passes until one asks for something other than "at once".
  Requeue Settle(const api::VmKey& key) {
    for (int i = 0; i < 20; ++i) {
      const Requeue r = Pass(key);
      if (r != kNow) return r;
    }
    ADD_FAILURE() << key << " still asks for a pass at once after 20 passes";
    return kNow;
  }

  // Passes, stepping the clock by every delay asked for, until the VM is idle.
  void Converge(const api::VmKey& key, int max_waits = 20) {
    for (int i = 0; i < max_waits; ++i) {
      const Requeue r = Settle(key);
      if (r == kIdle) return;
      if (!r.after || *r.after <= 0ns) return;  // already reported
      clock_.Advance(*r.after);
    }
    ADD_FAILURE() << key << " did not converge after " << max_waits << " waits";
  }

  api::VmKey BootToReady(const api::VmSpec& spec) {
    const api::VmKey key = Want(spec);
    Converge(key);
    EXPECT_EQ(Status(key).phase, "Ready");
    return key;
  }

  api::VmKey BootToPaused(api::VmSpec spec) {
    spec.desired_state = api::DesiredState::kPaused;
    const api::VmKey key = Want(spec);
    Converge(key);
    EXPECT_EQ(Status(key).phase, "Paused");
    return key;
  }

  // The VMM dies; the next pass sees it and (under Always) the one after that
  // waits for the crash-loop backoff.
  void Crash(const api::VmKey& key) {
    fake().CrashNow(key);
    EXPECT_EQ(Pass(key), kNow);
    EXPECT_EQ(Status(key).phase, "Failed");
  }

  // The guest powers itself off. The fake has no guest of its own, so the test
  // presses the power button, through the same identity check vmlet makes,
  // and lets the shutdown delay pass.
  void GuestPowersOff(const api::VmKey& key) {
    const VmRecord record = Record(key);
    ASSERT_TRUE(record.vmm.has_value());
    drivers::VmmIdentity::Check check = vmlet_->identity.Confirm(key, *record.vmm);
    ASSERT_TRUE(check.vmm.has_value()) << check.reason;
    ASSERT_TRUE(fake().Shutdown(*check.vmm, clock_.MonotonicNow() + 10s).ok());
    clock_.Advance(kShutdownDelay);
  }

  void IgnorePowerButton(const api::VmKey& key) {
    drivers::FakeFaults faults;
    faults.ignore_power_button = true;
    fake().SetFaults(key, faults);
  }

  void FailBoots(const api::VmKey& key, int n) {
    drivers::FakeFaults faults;
    faults.fail_boots = n;
    fake().SetFaults(key, faults);
  }

  // A graceful stop that the guest honours: the power button on this pass,
  // polled every second (the grace period is 30 s), and the exit seen as
  // asked for once the guest is off.
  void ExpectGracefulStop(const api::VmKey& key) {
    EXPECT_EQ(Pass(key), After(1s));
    EXPECT_EQ(LastHookedReason(key), "Stopping");
    EXPECT_EQ(fake().LiveVmms(), 1u);
    clock_.Advance(kShutdownDelay);
    EXPECT_EQ(Pass(key), kNow);
    EXPECT_EQ(LastHookedReason(key), "Stopped");
    EXPECT_EQ(fake().LiveVmms(), 0u);
  }

  // The VM left this node's care: no VMM, no state directory, no status.
  void ExpectForgotten(const api::VmKey& key, const std::string& vm_dir) {
    EXPECT_FALSE(store().VmDirExists(key));
    EXPECT_FALSE(fs::exists(vm_dir));
    EXPECT_THAT(forgotten_, ElementsAre(key));
    EXPECT_EQ(reconciler().StatusOf(key), std::nullopt);
    EXPECT_EQ(reconciler().KeyForVmDir(vm_dir), std::nullopt);
    EXPECT_EQ(fake().LiveVmms(), 0u);
  }

  // --- what vmlet wrote ----------------------------------------------------------

  // status.json, which must also be what StatusOf() returns.
  VmStatus Status(const api::VmKey& key) {
    std::optional<VmStatus> on_disk = store().LoadStatus(key);
    EXPECT_TRUE(on_disk.has_value()) << "no status.json for " << key;
    EXPECT_TRUE(on_disk == reconciler().StatusOf(key)) << "status.json and StatusOf() differ";
    return on_disk.value_or(VmStatus{});
  }

  static Condition ConditionOf(const VmStatus& status, std::string_view type) {
    const Condition* c = FindCondition(status, type);
    return c != nullptr ? *c : Condition{std::string(type), "<absent>", "", "", {}};
  }

  VmRecord Record(const api::VmKey& key) {
    api::StatusOr<StateStore::LoadedRecord> loaded = store().LoadRecord(key);
    EXPECT_TRUE(loaded.ok() && loaded->record) << "no readable record.json for " << key;
    return loaded.ok() && loaded->record ? *loaded->record : VmRecord{};
  }

  // The reasons in events.jsonl, oldest first.
  std::vector<std::string> Events(const api::VmKey& key) {
    std::vector<std::string> reasons;
    for (const Event& e : store().RecentEvents(key, 1000)) reasons.push_back(e.reason);
    return reasons;
  }

  std::string LastEvent(const api::VmKey& key) {
    std::vector<Event> events = store().RecentEvents(key, 1);
    return events.empty() ? "<none>" : events.back().reason;
  }

  std::string LastEventMessage(const api::VmKey& key) {
    std::vector<Event> events = store().RecentEvents(key, 1);
    return events.empty() ? "<none>" : events.back().message;
  }

  // The reasons the event hook saw (these outlive a removed state directory).
  std::vector<std::string> HookedReasons(const api::VmKey& key) const {
    std::vector<std::string> reasons;
    for (const auto& [k, e] : events_) {
      if (k == key) reasons.push_back(e.reason);
    }
    return reasons;
  }

  std::string LastHookedReason(const api::VmKey& key) const {
    std::vector<std::string> reasons = HookedReasons(key);
    return reasons.empty() ? "<none>" : reasons.back();
  }

  std::vector<std::string> Transitions() const {
    std::vector<std::string> out;
    for (const PhaseChange& c : phase_changes_) out.push_back(c.from + "->" + c.to);
    return out;
  }

  testing::FakeClock clock_;
  const testing::TempDir temp_dir_{"reconciler-test"};
  const std::string dir_ = temp_dir_.path();
  std::string state_dir_;
  milliseconds boot_delay_ = kBootDelay;
  std::unique_ptr<Vmlet> vmlet_;

  std::map<api::VmKey, api::VmSpec> manifests_;
  std::map<api::VmKey, manifests::ManifestError> invalid_;
  std::shared_ptr<const manifests::Snapshot> published_;

  std::vector<std::string> mismatches_;
  std::vector<std::pair<std::string, double>> boot_durations_;
  std::vector<std::pair<api::VmKey, std::string>> restarts_;
  std::vector<PhaseChange> phase_changes_;
  std::vector<api::VmKey> forgotten_;
  std::vector<std::pair<api::VmKey, Event>> events_;
};

// ===========================================================================
// Desired Running.

TEST_F(ReconcilerTest, RunningVmWithoutVmmIsBootedAndRecordedAtOnce) {
  const api::VmSpec spec = Spec();
  const api::VmKey key = Want(spec);

  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 1u);
  const VmRecord record = Record(key);
  EXPECT_EQ(record.driver, "fake");
  EXPECT_EQ(record.spec_hash, manifests::BootHash(spec));
  EXPECT_EQ(record.boot_requested_at, kT0);
  EXPECT_EQ(record.restart_count, 0u);
  ASSERT_TRUE(record.vmm.has_value());
  EXPECT_EQ(record.vmm->process.pid, kFirstPid);
  EXPECT_EQ(record.vmm->boot_id, kBootId);
  EXPECT_EQ(record.vmm->vm_dir, store().VmDir(key));
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Starting");
  EXPECT_EQ(status.desired_state, "Running");
  EXPECT_EQ(status.observed_generation, manifests::BootHash(spec));
  ASSERT_TRUE(status.vmm.has_value());
  EXPECT_EQ(status.vmm->pid, kFirstPid);
  EXPECT_THAT(Events(key), ElementsAre("Booted"));
  EXPECT_EQ(reconciler().KeyForVmDir(store().VmDir(key)), key);
}

TEST_F(ReconcilerTest, StartingVmIsLookedAtAgainWhenTheDriverExpectsItReady) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);

  clock_.Advance(500ms);
  EXPECT_EQ(Pass(key), After(1500ms));

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).phase, "Starting");
  EXPECT_EQ(ConditionOf(Status(key), "Ready").status, "False");
}

TEST_F(ReconcilerTest, StartingVmBecomesReadyWithItsIpAndBootDuration) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);
  ASSERT_EQ(Pass(key), After(kBootDelay));

  clock_.Advance(kBootDelay);
  EXPECT_EQ(Pass(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.ip, kFirstIp);
  EXPECT_EQ(status.last_boot_duration_seconds, 2.0);
  EXPECT_EQ(status.restart_count, 0u);
  const Condition ready = ConditionOf(status, "Ready");
  EXPECT_EQ(ready.status, "True");
  EXPECT_EQ(ready.reason, "GuestReady");
  EXPECT_EQ(ready.last_transition_time, kT0 + 2s);
  EXPECT_EQ(ConditionOf(status, "Converged").status, "True");
  EXPECT_EQ(ConditionOf(status, "CrashLoopBackOff").status, "False");
  EXPECT_EQ(ConditionOf(status, "ManifestValid").status, "True");
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready"));
  EXPECT_EQ(LastEventMessage(key), "the guest reported ready at 10.106.26.128 2s after boot");
  EXPECT_EQ(Record(key).ready_at, kT0 + 2s);
}

TEST_F(ReconcilerTest, ReadyVmIsLeftAlone) {
  const api::VmKey key = BootToReady(Spec());
  const std::vector<std::string> events = Events(key);

  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Events(key), events);
  EXPECT_EQ(Status(key).phase, "Ready");
}

TEST_F(ReconcilerTest, PausedVmIsResumedWhenDesiredRunning) {
  const api::VmKey key = BootToPaused(Spec());

  SetDesiredState(key, api::DesiredState::kRunning);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "Resumed");
  EXPECT_EQ(Settle(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(ConditionOf(status, "Paused").status, "False");
  EXPECT_EQ(fake().BootCount(key), 1);
}

TEST_F(ReconcilerTest, StoppedVmIsBootedWhenDesiredRunningAgain) {
  const api::VmKey key = BootToReady(Spec());
  SetDesiredState(key, api::DesiredState::kStopped);
  Converge(key);
  ASSERT_EQ(Status(key).phase, "Stopped");

  SetDesiredState(key, api::DesiredState::kRunning);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(LastEvent(key), "Booted");
  EXPECT_EQ(Record(key).restart_count, 0u);
  EXPECT_THAT(restarts_, IsEmpty());
}

TEST_F(ReconcilerTest, CrashedVmShowsCrashLoopBackOffUntilItsNextAttempt) {
  const api::VmKey key = BootToReady(Spec());  // Ready at T0 + 2 s

  Crash(key);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.reason, "the VMM crashed");
  EXPECT_EQ(status.vmm, std::nullopt);
  const Condition backoff = ConditionOf(status, "CrashLoopBackOff");
  EXPECT_EQ(backoff.status, "True");
  EXPECT_EQ(backoff.reason, "BackOff");
  EXPECT_EQ(backoff.message, "restart 1 waits 10s; next attempt at 2026-11-28T00:00:12.000Z");
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Crashed"));
  EXPECT_EQ(Pass(key), After(10s));
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Record(key).vmm, std::nullopt);
}

TEST_F(ReconcilerTest, CrashedVmIsRestartedAfterBackOffGrowingAsTheSquareOfItsFailures) {
  const api::VmKey key = BootToReady(Spec());
  const std::vector<nanoseconds> delays = {10s, 40s, 90s, 160s, 250s, 300s, 300s};

  for (size_t i = 0; i < delays.size(); ++i) {
    const int n = static_cast<int>(i) + 1;
    SCOPED_TRACE("failure " + std::to_string(n));
    Crash(key);
    EXPECT_EQ(Pass(key), After(delays[i]));
    EXPECT_EQ(ConditionOf(Status(key), "CrashLoopBackOff").status, "True");

    clock_.Advance(delays[i] - 1ms);
    EXPECT_EQ(Pass(key), After(1ms));
    EXPECT_EQ(fake().BootCount(key), n);

    clock_.Advance(1ms);
    EXPECT_EQ(Pass(key), kNow);
    EXPECT_EQ(fake().BootCount(key), n + 1);
    const VmStatus status = Status(key);
    EXPECT_EQ(status.phase, "Starting");
    EXPECT_EQ(status.restart_count, static_cast<uint32_t>(n));
    EXPECT_EQ(ConditionOf(status, "CrashLoopBackOff").status, "False");
    EXPECT_EQ(LastEvent(key), "Restarted");
  }
  EXPECT_EQ(Record(key).consecutive_failures, 7u);
}

TEST_F(ReconcilerTest, ReadyVmInACrashLoopIsRequeuedWhenItsFiveMinutesReadyAreUp) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  ASSERT_EQ(Settle(key), After(kBootDelay));
  clock_.Advance(kBootDelay);

  EXPECT_EQ(Pass(key), After(5min));  // Ready now, with one failure on the count
  clock_.Advance(100s);
  EXPECT_EQ(Pass(key), After(200s));
  EXPECT_EQ(Record(key).consecutive_failures, 1u);
}

TEST_F(ReconcilerTest, CrashLoopCountResetsAfterFiveMinutesReady) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  ASSERT_EQ(Settle(key), After(kBootDelay));
  clock_.Advance(kBootDelay);
  ASSERT_EQ(Pass(key), After(5min));

  clock_.Advance(5min);
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Record(key).consecutive_failures, 0u);

  Crash(key);
  EXPECT_EQ(Pass(key), After(10s));  // not 40 s: the loop was left
  EXPECT_EQ(Record(key).restart_count, 1u);
}

TEST_F(ReconcilerTest, CrashWithinFiveMinutesOfReadyKeepsTheCrashLoopGoing) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  ASSERT_EQ(Settle(key), After(kBootDelay));
  clock_.Advance(kBootDelay);
  ASSERT_EQ(Pass(key), After(5min));

  clock_.Advance(5min - 1s);
  Crash(key);
  EXPECT_EQ(Pass(key), After(40s));
}

TEST_F(ReconcilerTest, OnFailurePolicyRestartsACrashedVm) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kOnFailure;
  const api::VmKey key = BootToReady(spec);

  Crash(key);
  EXPECT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Record(key).restart_count, 1u);
  EXPECT_THAT(restarts_, ElementsAre(Pair(key, "the VMM crashed")));
}

TEST_F(ReconcilerTest, OnFailurePolicyLeavesAVmWhoseGuestPoweredOffStopped) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kOnFailure;
  const api::VmKey key = BootToReady(spec);

  GuestPowersOff(key);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "PoweredOff");
  EXPECT_EQ(Pass(key), kIdle);

  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 0u);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_THAT(restarts_, IsEmpty());
}

TEST_F(ReconcilerTest, AlwaysPolicyRestartsAVmWhoseGuestPoweredOffAfterBackOff) {
  const api::VmKey key = BootToReady(Spec());

  GuestPowersOff(key);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Status(key).phase, "Stopped");
  EXPECT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Record(key).restart_count, 1u);
  EXPECT_THAT(restarts_, ElementsAre(Pair(key, "Stopped")));
}

TEST_F(ReconcilerTest, NeverPolicyLeavesACrashedVmFailed) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kNever;
  const api::VmKey key = BootToReady(spec);

  Crash(key);
  EXPECT_EQ(Pass(key), kIdle);
  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason, "the VMM crashed");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_THAT(restarts_, IsEmpty());
}

// Was: a VM whose policy will not restart it shows CrashLoopBackOff=True.
// Input: restartPolicy Never (or OnFailure after a clean power-off), the VMM
// exits, vmlet converges (the pass after the exit returns idle).
// Actual: status.json keeps CrashLoopBackOff=True "restart 1 waits 10s; next
// attempt at ..." (VmmGone sets next_restart_at whatever the policy, and
// Step's `if (!restart) return Idle();` never clears it); the status stays so
// until some later pass happens to run after those 10 s.
// Expected: CrashLoopBackOff=False once the reconciler has decided not to
// restart: there is no next attempt.
TEST_F(ReconcilerTest, VmThatWillNotBeRestartedShowsNoCrashLoopBackOff) {
  api::VmSpec never = Spec("never");
  never.restart_policy = api::RestartPolicy::kNever;
  api::VmSpec on_failure = Spec("on-failure");
  on_failure.restart_policy = api::RestartPolicy::kOnFailure;
  const api::VmKey crashed = BootToReady(never);
  const api::VmKey powered_off = BootToReady(on_failure);

  Crash(crashed);
  EXPECT_EQ(Pass(crashed), kIdle);
  GuestPowersOff(powered_off);
  EXPECT_EQ(Settle(powered_off), kIdle);

  EXPECT_EQ(ConditionOf(Status(crashed), "CrashLoopBackOff").status, "False");
  EXPECT_EQ(ConditionOf(Status(powered_off), "CrashLoopBackOff").status, "False");
}

// Was: a VM that its restart policy left down can never be started again by
// desiredState.
// Input: restartPolicy Never; the VMM crashes (Failed, not restarted: right);
// the operator sets desiredState Stopped, lets it converge, then Running.
// Actual: the Running pass returns idle and boots nothing, for ever: the
// record keeps last_exit_phase "Failed", and Step applies the restart policy
// to it again (`if (!restart) return Idle();`). The same happens with
// OnFailure after a clean guest power-off (last_exit_phase "Stopped"). Only a
// boot-spec change or deleting the VM gets it running again. (With Always the
// VM does boot, but it is counted as a restart: restartCount + 1, event
// Restarted, hooks.restarted.)
// Expected: once desiredState Stopped has been reached the exit is settled
// (docs/reconcile.md: Stopped | Failed -> clean up; then Running | Stopped -> boot):
// the Running pass boots the VM at once, as an operator start, not a restart
// (restartCount stays 0).
TEST_F(ReconcilerTest, VmLeftDownByItsPolicyBootsWhenTheOperatorStopsAndStartsIt) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kNever;
  const api::VmKey key = BootToReady(spec);
  Crash(key);
  ASSERT_EQ(Pass(key), kIdle);

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Settle(key), kIdle);
  SetDesiredState(key, api::DesiredState::kRunning);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Record(key).restart_count, 0u);
  EXPECT_EQ(LastEvent(key), "Booted");
}

TEST_F(ReconcilerTest, VmWithoutReadyMarkerIsKilledAtItsReadinessTimeoutAndRestarted) {
  UseBootDelay(10s);
  api::VmSpec spec = Spec();
  spec.readiness_timeout = 5s;
  const api::VmKey key = Want(spec);
  ASSERT_EQ(Pass(key), kNow);
  EXPECT_EQ(Pass(key), After(5s));  // the timeout comes before the fake's 10 s

  clock_.Advance(5s);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(fake().LiveVmms(), 0u);
  EXPECT_EQ(LastEvent(key), "ReadinessTimeout");
  EXPECT_EQ(Pass(key), kNow);  // the exit is seen

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason, "no ready marker within 5s");
  EXPECT_THAT(Events(key), ElementsAre("Booted", "ReadinessTimeout", "Crashed"));
  EXPECT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Record(key).restart_count, 1u);
  EXPECT_THAT(restarts_, ElementsAre(Pair(key, "no ready marker within 5s")));
}

TEST_F(ReconcilerTest, SpecTheDriverCannotHonourFailsWithoutBooting) {
  api::VmSpec spec = Spec();
  spec.rosetta = true;
  const api::VmKey key = Want(spec);

  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 0);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason,
            "driver fake cannot run this spec: spec.rosetta: the fake driver runs on Linux");
}

// ===========================================================================
// Desired Paused.

TEST_F(ReconcilerTest, PausedVmWithoutVmmIsBooted) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kPaused;
  const api::VmKey key = Want(spec);

  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).phase, "Starting");
}

TEST_F(ReconcilerTest, StartingVmDesiredPausedIsWaitedForNotPaused) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kPaused;
  const api::VmKey key = Want(spec);
  ASSERT_EQ(Pass(key), kNow);

  EXPECT_EQ(Pass(key), After(kBootDelay));

  EXPECT_EQ(Status(key).phase, "Starting");
  EXPECT_THAT(Events(key), ElementsAre("Booted"));
}

TEST_F(ReconcilerTest, BootedVmDesiredPausedIsPausedOnceReady) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kPaused;
  const api::VmKey key = Want(spec);
  ASSERT_EQ(Pass(key), kNow);
  ASSERT_EQ(Pass(key), After(kBootDelay));

  clock_.Advance(kBootDelay);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Paused"));
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Paused");
  EXPECT_EQ(status.last_boot_duration_seconds, 2.0);
  EXPECT_EQ(ConditionOf(status, "Paused").status, "True");
  EXPECT_EQ(ConditionOf(status, "Converged").status, "True");
}

TEST_F(ReconcilerTest, ReadyVmIsPausedWhenDesiredPaused) {
  const api::VmKey key = BootToReady(Spec());

  SetDesiredState(key, api::DesiredState::kPaused);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(LastEvent(key), "Paused");
  EXPECT_EQ(Status(key).phase, "Paused");
  EXPECT_EQ(fake().BootCount(key), 1);
}

TEST_F(ReconcilerTest, PauseThatFailsIsARetryableError) {
  const api::VmKey key = BootToReady(Spec());
  drivers::FakeFaults faults;
  faults.fail_pause = true;
  fake().SetFaults(key, faults);

  SetDesiredState(key, api::DesiredState::kPaused);
  api::StatusOr<ReconcileResult> result = reconciler().Reconcile(key);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status(), api::Status::Unavailable("injected pause failure"));
  EXPECT_EQ(Status(key).phase, "Ready");

  fake().SetFaults(key, drivers::FakeFaults());
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Status(key).phase, "Paused");
}

TEST_F(ReconcilerTest, PausedVmDesiredPausedIsLeftAlone) {
  const api::VmKey key = BootToPaused(Spec());
  const std::vector<std::string> events = Events(key);

  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(Events(key), events);
  EXPECT_EQ(Status(key).phase, "Paused");
}

TEST_F(ReconcilerTest, CrashedVmDesiredPausedIsRestartedAfterBackOffThenPaused) {
  const api::VmKey key = BootToPaused(Spec());

  Crash(key);
  EXPECT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(fake().BootCount(key), 2);
  Converge(key);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Paused");
  EXPECT_EQ(status.restart_count, 1u);
  EXPECT_EQ(LastEvent(key), "Paused");
}

// ===========================================================================
// Desired Stopped.

TEST_F(ReconcilerTest, StoppedVmWithoutVmmIsNotBooted) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kStopped;
  const api::VmKey key = Want(spec);

  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 0);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.desired_state, "Stopped");
  EXPECT_EQ(ConditionOf(status, "Converged").status, "True");
  EXPECT_THAT(Events(key), IsEmpty());
}

TEST_F(ReconcilerTest, StartingVmIsStoppedGracefullyWhenDesiredStopped) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);

  SetDesiredState(key, api::DesiredState::kStopped);
  ExpectGracefulStop(key);
  EXPECT_EQ(Pass(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_EQ(status.vmm, std::nullopt);
  EXPECT_EQ(ConditionOf(status, "Converged").status, "True");
  EXPECT_EQ(Record(key).vmm, std::nullopt);
  EXPECT_EQ(fake().BootCount(key), 1);
}

TEST_F(ReconcilerTest, ReadyVmIsStoppedGracefullyWhenDesiredStopped) {
  const api::VmKey key = BootToReady(Spec());

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Pass(key), After(1s));
  EXPECT_EQ(Status(key).reason, "Stopping: desiredState is Stopped");
  EXPECT_EQ(LastEventMessage(key),
            "desiredState is Stopped: ACPI power button pressed; forced stop after 30s");
  EXPECT_EQ(Record(key).stop_requested_at, kT0 + 2s);
  clock_.Advance(500ms);
  EXPECT_EQ(Pass(key), After(500ms));  // the fake powers off 1 s after the button
  clock_.Advance(500ms);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Pass(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.reason, "");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Stopping", "Stopped"));
  const VmRecord record = Record(key);
  EXPECT_EQ(record.vmm, std::nullopt);
  EXPECT_FALSE(record.stop_requested);
  EXPECT_EQ(record.last_exit_phase, std::nullopt);
  EXPECT_EQ(fake().LiveVmms(), 0u);
}

TEST_F(ReconcilerTest, PausedVmIsResumedThenStoppedGracefully) {
  const api::VmKey key = BootToPaused(Spec());

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "Resumed");
  ExpectGracefulStop(key);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(Status(key).phase, "Stopped");
}

TEST_F(ReconcilerTest, GuestIgnoringThePowerButtonIsKilledWhenTheGracePeriodEnds) {
  const api::VmKey key = BootToReady(Spec());
  IgnorePowerButton(key);

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Pass(key), After(1s));
  clock_.Advance(29500ms);
  EXPECT_EQ(Pass(key), After(500ms));
  EXPECT_EQ(fake().LiveVmms(), 1u);
  EXPECT_THAT(Events(key), Not(Contains("Killed")));

  clock_.Advance(500ms);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "Killed");
  EXPECT_EQ(fake().LiveVmms(), 0u);
  EXPECT_EQ(Settle(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Stopping", "Killed", "Stopped"));
}

TEST_F(ReconcilerTest, StopWithZeroGracePeriodKillsWithoutWaiting) {
  api::VmSpec spec = Spec();
  spec.stop_grace_period = 0s;
  const api::VmKey key = BootToReady(spec);

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().LiveVmms(), 0u);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Stopping", "Killed"));
  EXPECT_EQ(Settle(key), kIdle);
  EXPECT_EQ(Status(key).phase, "Stopped");
}

TEST_F(ReconcilerTest, CrashedVmDesiredStoppedIsNotRestarted) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));

  SetDesiredState(key, api::DesiredState::kStopped);
  EXPECT_EQ(Pass(key), kIdle);
  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 0u);
  const VmStatus status = Status(key);
  EXPECT_EQ(ConditionOf(status, "CrashLoopBackOff").status, "False");
  EXPECT_EQ(ConditionOf(status, "Converged").status, "True");
  EXPECT_EQ(Record(key).vmm, std::nullopt);
}

// ===========================================================================
// Deleted.

TEST_F(ReconcilerTest, DeletedVmThatNeverHadAVmmIsForgotten) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kStopped;
  const api::VmKey key = Want(spec);
  ASSERT_EQ(Pass(key), kIdle);
  const std::string vm_dir = store().VmDir(key);
  ASSERT_TRUE(fs::exists(vm_dir + "/status.json"));

  Delete(key);
  EXPECT_EQ(Pass(key), kIdle);

  ExpectForgotten(key, vm_dir);
  EXPECT_FALSE(fs::exists(state_dir_ + "/vms/prod"));
}

TEST_F(ReconcilerTest, UnknownKeyIsIdleAndLeavesNoTrace) {
  const api::VmKey key{"prod", "ghost"};

  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_FALSE(store().VmDirExists(key));
  EXPECT_THAT(forgotten_, IsEmpty());
  EXPECT_EQ(reconciler().StatusOf(key), std::nullopt);
}

TEST_F(ReconcilerTest, DeletedStartingVmIsStoppedAndCleanedUp) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);
  const std::string vm_dir = store().VmDir(key);

  Delete(key);
  ExpectGracefulStop(key);
  EXPECT_EQ(Status(key).desired_state, "Deleted");
  EXPECT_EQ(Pass(key), kIdle);

  ExpectForgotten(key, vm_dir);
}

TEST_F(ReconcilerTest, DeletedReadyVmIsStoppedAndCleanedUp) {
  const api::VmKey key = BootToReady(Spec());
  const std::string vm_dir = store().VmDir(key);

  Delete(key);
  ExpectGracefulStop(key);
  EXPECT_EQ(Pass(key), kIdle);

  ExpectForgotten(key, vm_dir);
  EXPECT_THAT(HookedReasons(key), ElementsAre("Booted", "Ready", "Stopping", "Stopped"));
}

TEST_F(ReconcilerTest, DeletedPausedVmIsResumedStoppedAndCleanedUp) {
  const api::VmKey key = BootToPaused(Spec());
  const std::string vm_dir = store().VmDir(key);

  Delete(key);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastHookedReason(key), "Resumed");
  ExpectGracefulStop(key);
  EXPECT_EQ(Pass(key), kIdle);

  ExpectForgotten(key, vm_dir);
}

TEST_F(ReconcilerTest, DeletedCrashedVmIsCleanedUpWithoutWaitingForItsBackOff) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  ASSERT_EQ(Pass(key), kNow);
  Crash(key);
  ASSERT_EQ(Pass(key), After(40s));
  const std::string vm_dir = store().VmDir(key);

  Delete(key);
  EXPECT_EQ(Pass(key), kIdle);  // no clock advance

  ExpectForgotten(key, vm_dir);
  EXPECT_EQ(fake().BootCount(key), 2);
}

TEST_F(ReconcilerTest, DeletedVmWhoseVmmJustCrashedIsCleanedUp) {
  const api::VmKey key = BootToReady(Spec());
  const std::string vm_dir = store().VmDir(key);
  fake().CrashNow(key);

  Delete(key);
  EXPECT_EQ(Settle(key), kIdle);

  ExpectForgotten(key, vm_dir);
  EXPECT_EQ(fake().BootCount(key), 1);
}

TEST_F(ReconcilerTest, VmPlacedOnAnotherNodeIsStoppedAndCleanedUpHere) {
  api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);
  const std::string vm_dir = store().VmDir(key);

  spec.node_name = "node-b";
  Want(spec);
  ExpectGracefulStop(key);
  EXPECT_EQ(Pass(key), kIdle);

  ExpectForgotten(key, vm_dir);
}

// ===========================================================================
// Spec changes.

TEST_F(ReconcilerTest, ReadyVmWhoseBootSpecChangedIsStoppedGracefullyAndBootedWithTheNewSpec) {
  api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);

  spec.cpus = 2;
  Want(spec);
  EXPECT_EQ(Pass(key), After(1s));
  EXPECT_EQ(LastEventMessage(key),
            "the spec changed; the VM is recreated: ACPI power button pressed; forced stop after "
            "30s");
  EXPECT_EQ(fake().BootCount(key), 1);
  clock_.Advance(kShutdownDelay);
  EXPECT_EQ(Pass(key), kNow);  // the old VMM is off
  EXPECT_EQ(Pass(key), kNow);  // the new one boots

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(fake().LiveVmms(), 1u);
  const VmRecord record = Record(key);
  EXPECT_EQ(record.spec_hash, manifests::BootHash(spec));
  EXPECT_EQ(record.restart_count, 0u);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Stopping", "Stopped", "Booted"));
  Converge(key);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.observed_generation, manifests::BootHash(spec));
  EXPECT_THAT(restarts_, IsEmpty());
}

TEST_F(ReconcilerTest, PausedVmWhoseBootSpecChangedIsResumedStoppedBootedAndPausedAgain) {
  api::VmSpec spec = Spec();
  spec.desired_state = api::DesiredState::kPaused;
  const api::VmKey key = BootToPaused(spec);

  spec.memory_mb = 1024;
  Want(spec);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "Resumed");
  ExpectGracefulStop(key);
  Converge(key);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Status(key).phase, "Paused");
  EXPECT_EQ(Record(key).spec_hash, manifests::BootHash(spec));
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Paused", "Resumed", "Stopping",
                                       "Stopped", "Booted", "Ready", "Paused"));
}

TEST_F(ReconcilerTest, ChangingOnlyHowTheVmIsManagedDoesNotRecreateIt) {
  api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);
  const std::vector<std::string> events = Events(key);

  spec.restart_policy = api::RestartPolicy::kNever;
  spec.labels = {{"app", "web"}};
  spec.readiness_timeout = 60s;
  spec.stop_grace_period = 5s;
  Want(spec);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Events(key), events);
  EXPECT_EQ(Status(key).phase, "Ready");
}

TEST_F(ReconcilerTest, ChangingOnlyDesiredStateDoesNotRecreateTheVm) {
  const api::VmKey key = BootToReady(Spec());

  SetDesiredState(key, api::DesiredState::kPaused);
  Converge(key);
  SetDesiredState(key, api::DesiredState::kRunning);
  Converge(key);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "Paused", "Resumed"));
  EXPECT_EQ(Status(key).phase, "Ready");
}

TEST_F(ReconcilerTest, CrashedVmWhoseSpecChangedIsBootedWithoutWaitingForItsBackOff) {
  api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));

  spec.cpus = 2;
  Want(spec);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(Record(key).spec_hash, manifests::BootHash(spec));
}

// Was: a VM whose spec.driver changes is booted again through its OLD driver.
// Input: a Ready VM on driver "fake"; its manifest changes spec.driver to
// "fake-b" (both drivers available).
// Actual: the VMM is stopped through "fake" (right), but after its exit
// Reconcile picks the slot by rt.record->driver ("fake") and Boot() calls
// that slot's driver while writing record.driver = want.spec.driver
// ("fake-b"): a new VMM runs under "fake" (fake.BootCount == 2), and on the
// next pass the "fake-b" identity cannot find it (kGone), so it is reported
// Crashed, "restarted" on "fake-b" after 10 s, and the "fake" VMM is left
// running forever as an orphan (fake.LiveVmms() == 1).
// Expected: once the old VMM is gone the VM boots through the driver its spec
// names: fake.BootCount == 1 and fake.LiveVmms() == 0, fake-b.BootCount == 1,
// record.driver == "fake-b", no Crashed event, no restart.
TEST_F(ReconcilerTest, VmWhoseDriverChangedIsRecreatedOnTheNewDriver) {
  api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);

  spec.driver = "fake-b";
  Want(spec);
  Converge(key);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 0u);
  EXPECT_EQ(fake_b().BootCount(key), 1);
  EXPECT_EQ(fake_b().LiveVmms(), 1u);
  EXPECT_EQ(Record(key).driver, "fake-b");
  EXPECT_EQ(Status(key).phase, "Ready");
  EXPECT_THAT(Events(key), Not(Contains("Crashed")));
  EXPECT_THAT(restarts_, IsEmpty());
}

// ===========================================================================
// VMM identity.

TEST_F(ReconcilerTest, VmmWhosePidIsGoneIsTreatedAsExitedAndBootedPerPolicy) {
  const api::VmKey key = BootToReady(Spec());
  const drivers::VmmHandle handle = *Record(key).vmm;
  // While vmlet is down the VMM dies and its process is reaped: the pid is
  // no longer in the process table at all.
  fake().CrashNow(key);
  ASSERT_TRUE(fake().Cleanup(handle, clock_.MonotonicNow() + 10s).ok());
  ASSERT_FALSE(fake().proc_fs().ReadProcess(handle.process.pid).ok());
  RestartVmlet();

  EXPECT_EQ(Pass(key), kNow);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason, "the VMM exited (no exit record)");
  EXPECT_EQ(LastEvent(key), "Crashed");
  EXPECT_THAT(mismatches_, IsEmpty());
  EXPECT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(fake().BootCount(key), 2);
  EXPECT_EQ(fake().LiveVmms(), 1u);
}

TEST_F(ReconcilerTest, PidNowOwnedByAnotherProcessIsNeverSignalledAndTheVmIsBootedAfresh) {
  const api::VmKey web = BootToReady(Spec("web"));
  clock_.Advance(1s);  // so that db's VMM has another start time
  const api::VmKey db = BootToReady(Spec("db"));
  const pid_t db_pid = Record(db).vmm->process.pid;
  // While vmlet is down web's VMM dies and db's VMM gets its pid: web's
  // record now names a live process that is not web's.
  fake().CrashNow(web);
  VmRecord record = Record(web);
  record.vmm->process.pid = db_pid;
  ASSERT_TRUE(store().SaveRecord(web, record).ok());
  RestartVmlet();

  EXPECT_EQ(Pass(web), kNow);

  EXPECT_THAT(mismatches_, ElementsAre("fake"));
  EXPECT_EQ(vmlet_->identity.mismatches(), 1u);
  EXPECT_THAT(Events(web), Contains("IdentityMismatch"));
  EXPECT_EQ(LastEvent(web), "Crashed");
  const VmStatus status = Status(web);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason, "the VMM exited (its pid now belongs to another process)");
  // db's VMM was not touched.
  EXPECT_TRUE(fake().proc_fs().ReadProcess(db_pid).ok());
  EXPECT_EQ(Pass(db), kIdle);
  EXPECT_EQ(Status(db).phase, "Ready");

  EXPECT_EQ(Pass(web), After(10s));
  clock_.Advance(10s);
  Converge(web);
  EXPECT_EQ(fake().BootCount(web), 2);
  EXPECT_EQ(Status(web).phase, "Ready");
  EXPECT_NE(Record(web).vmm->process.pid, db_pid);
  EXPECT_EQ(fake().BootCount(db), 1);
  EXPECT_EQ(fake().LiveVmms(), 2u);
}

TEST_F(ReconcilerTest, VmmWhoseIdentityCannotBeVerifiedIsNeitherActedOnNorGivenUp) {
  const api::VmKey key = BootToReady(Spec());
  const drivers::VmmHandle handle = *Record(key).vmm;
  // A vmlet that sees the fake's VMM through a process table that can fail.
  testing::FakeProcFs procs(kBootId);
  procs.AddProcess(handle.process.pid, handle.process.start_time_ticks,
                   {"fake-vmm", "--vm-dir", handle.vm_dir});
  drivers::VmmIdentity identity(procs);
  Reconciler reconciler(
      clock_, vmlet_->desired, store(), {{"fake", {&fake(), &identity}}}, Reconciler::Options{},
      [] { return 1.0; }, Hooks());
  SetDesiredState(key, api::DesiredState::kStopped);
  procs.SetReadError(api::Status::Unavailable("/proc: Input/output error"));

  api::StatusOr<ReconcileResult> result = reconciler.Reconcile(key);

  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(result.status().IsRetryable());
  EXPECT_THAT(result.status().message(), StartsWith("cannot verify the VMM's identity: "));
  EXPECT_EQ(fake().LiveVmms(), 1u);
  EXPECT_EQ(Record(key).vmm, handle);
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready"));
  EXPECT_THAT(mismatches_, IsEmpty());

  procs.SetReadError(std::nullopt);
  result = reconciler.Reconcile(key);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Requeue{result->requeue_after}, After(1s));
  EXPECT_EQ(LastEvent(key), "Stopping");
}

// ===========================================================================
// vmlet restarts.

TEST_F(ReconcilerTest, NothingIsTouchedBeforeTheManifestDirectoryHasBeenRead) {
  const api::VmKey key = BootToReady(Spec());
  const std::vector<std::string> events = Events(key);

  RestartVmlet(/*read_manifests=*/false);
  EXPECT_EQ(Pass(key), kIdle);  // not in the desired state yet: unread, not deleted

  EXPECT_EQ(fake().LiveVmms(), 1u);
  EXPECT_TRUE(store().VmDirExists(key));
  EXPECT_EQ(Events(key), events);
  EXPECT_THAT(forgotten_, IsEmpty());
  Publish();
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Status(key).phase, "Ready");
}

TEST_F(ReconcilerTest, RestartedVmletReadoptsAReadyVmWithoutBootingIt) {
  const api::VmKey key = BootToReady(Spec());
  const std::vector<std::string> events = Events(key);
  const VmStatus before = Status(key);
  phase_changes_.clear();

  clock_.Advance(1min);
  RestartVmlet();
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 1u);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.ip, kFirstIp);
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_EQ(status.last_boot_duration_seconds, 2.0);
  EXPECT_EQ(ConditionOf(status, "Ready").last_transition_time,
            ConditionOf(before, "Ready").last_transition_time);
  EXPECT_EQ(Events(key), events);
  EXPECT_THAT(phase_changes_, IsEmpty());
  EXPECT_EQ(reconciler().KeyForVmDir(store().VmDir(key)), key);
}

TEST_F(ReconcilerTest, RestartedVmletCountsTheReadinessTimeoutFromTheOriginalBoot) {
  UseBootDelay(10s);
  api::VmSpec spec = Spec();
  spec.readiness_timeout = 5s;
  const api::VmKey key = Want(spec);
  ASSERT_EQ(Pass(key), kNow);
  clock_.Advance(3s);

  RestartVmlet();
  EXPECT_EQ(Pass(key), After(2s));
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).phase, "Starting");

  clock_.Advance(2s);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(LastEvent(key), "ReadinessTimeout");
  EXPECT_EQ(fake().LiveVmms(), 0u);
}

TEST_F(ReconcilerTest, RestartedVmletMeasuresBootDurationFromTheOriginalBoot) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);
  clock_.Advance(1s);

  RestartVmlet();
  EXPECT_EQ(Pass(key), After(1s));
  clock_.Advance(1s);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(Status(key).last_boot_duration_seconds, 2.0);
  EXPECT_THAT(boot_durations_, ElementsAre(Pair("fake", 2.0)));
}

TEST_F(ReconcilerTest, RestartedVmletKillsAtTheEndOfTheOriginalGracePeriod) {
  const api::VmKey key = BootToReady(Spec());
  IgnorePowerButton(key);
  SetDesiredState(key, api::DesiredState::kStopped);
  ASSERT_EQ(Pass(key), After(1s));
  clock_.Advance(20s);

  RestartVmlet();
  clock_.Advance(9500ms);
  EXPECT_EQ(Pass(key), After(500ms));
  EXPECT_EQ(fake().LiveVmms(), 1u);
  clock_.Advance(500ms);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(LastEvent(key), "Killed");
  EXPECT_EQ(fake().LiveVmms(), 0u);
}

// Was: restarting vmlet skips a crash-looping VM's backoff.
// Input: a VM crashed (n = 1: its restart waits 10 s); 4 s later vmlet
// restarts (upgrade, or vmlet itself crash-looping under systemd).
// Actual: the first pass of the new vmlet boots the VM at once (requeue 0,
// BootCount 2): next_restart_at lives only in memory and Load does not
// rebuild it (the record keeps consecutive_failures but not when the VMM
// exited), although it rebuilds the readiness, grace and crash-loop-reset
// clocks. Every crash-looping VM on the node restarts at the same moment.
// Expected: "each restart waits 10 s x n^2" across restarts as well: the pass
// waits the remaining 6 s and shows CrashLoopBackOff=True.
TEST_F(ReconcilerTest, RestartedVmletKeepsACrashLoopingVmWaitingForItsBackOff) {
  const api::VmKey key = BootToReady(Spec());
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(4s);

  RestartVmlet();
  EXPECT_EQ(Pass(key), After(6s));

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(ConditionOf(Status(key), "CrashLoopBackOff").status, "True");
}

// ===========================================================================
// Corrupt records.

TEST_F(ReconcilerTest, CorruptRecordIsQuarantinedAndTheVmIsBooted) {
  const api::VmKey key = Spec().key();
  ASSERT_TRUE(store().EnsureVmDir(key).ok());
  const std::string vm_dir = store().VmDir(key);
  std::ofstream(vm_dir + "/record.json") << "{\"version\": 1, \"driver\": ";
  Want(Spec());

  EXPECT_EQ(Pass(key), kNow);

  EXPECT_TRUE(fs::exists(vm_dir + "/record.json.corrupt-20261128T000000Z"));
  EXPECT_THAT(Events(key), ElementsAre("RecordQuarantined", "Booted"));
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Record(key).vmm->process.pid, kFirstPid);
  Converge(key);
  EXPECT_EQ(Status(key).phase, "Ready");
}

TEST_F(ReconcilerTest, CorruptRecordOfARunningVmIsQuarantinedAndItsVmmAdopted) {
  const api::VmSpec spec = Spec();
  const api::VmKey key = BootToReady(spec);  // Ready at T0 + 2 s
  const std::string vm_dir = store().VmDir(key);
  std::ofstream(vm_dir + "/record.json", std::ios::trunc) << "garbage";

  RestartVmlet();
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_TRUE(fs::exists(vm_dir + "/record.json.corrupt-20261128T000002Z"));
  // An adopted VMM's state is unknown until observed: its readiness is
  // recorded afresh (without a boot duration, which is unknown too).
  EXPECT_THAT(Events(key), ElementsAre("Booted", "Ready", "RecordQuarantined", "Adopted", "Ready"));
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 1u);
  const VmRecord record = Record(key);
  ASSERT_TRUE(record.vmm.has_value());
  EXPECT_EQ(record.vmm->process.pid, kFirstPid);
  EXPECT_EQ(record.spec_hash, manifests::BootHash(spec));
  EXPECT_EQ(record.restart_count, 0u);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.ip, kFirstIp);
}

// Was: an adopted VMM that is still booting is taken to be Ready already.
// Input: a VM is Starting (booted at T0, ready at T0 + 2 s) when its
// record.json is found corrupt; vmlet adopts its VMM (Rediscover) and then
// sees the guest become ready.
// Actual: Rediscover writes record.ready_at = now (T0) whatever the VMM's
// state, so Load sets ready_since, and when the guest does become ready
// Step skips the ready branch: no Ready event, record.ready_at stays T0 (when
// the guest was not ready), and the crash-loop reset counts from adoption.
// Expected: ready_at only once the adopted VMM is seen Ready: a Ready event
// and record.ready_at == T0 + 2 s.
TEST_F(ReconcilerTest, AdoptedVmmThatIsStillStartingBecomesReadyLikeAnyOther) {
  const api::VmKey key = Want(Spec());
  ASSERT_EQ(Pass(key), kNow);
  std::ofstream(store().VmDir(key) + "/record.json", std::ios::trunc) << "garbage";

  RestartVmlet();
  EXPECT_EQ(Pass(key), After(kBootDelay));
  EXPECT_EQ(Status(key).phase, "Starting");
  clock_.Advance(kBootDelay);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_THAT(Events(key), ElementsAre("Booted", "RecordQuarantined", "Adopted", "Ready"));
  EXPECT_EQ(Record(key).ready_at, kT0 + kBootDelay);
  EXPECT_EQ(Status(key).phase, "Ready");
}

// ===========================================================================
// Invalid manifests.

TEST_F(ReconcilerTest, InvalidManifestLeavesTheRunningVmAloneAndShowsTheError) {
  const api::VmKey key = BootToReady(Spec());
  const std::vector<std::string> events = Events(key);

  MarkInvalid(key, CpusError(key));
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(fake().LiveVmms(), 1u);
  EXPECT_EQ(Events(key), events);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  const Condition valid = ConditionOf(status, "ManifestValid");
  EXPECT_EQ(valid.status, "False");
  EXPECT_EQ(valid.reason, "ManifestInvalid");
  EXPECT_EQ(valid.message,
            "/etc/vmlet/manifests/web.yaml:7:9: spec.cpus: must be at least 1 (the VM keeps its "
            "last valid spec)");
}

TEST_F(ReconcilerTest, FixedManifestClearsManifestValidFalse) {
  const api::VmKey key = BootToReady(Spec());
  MarkInvalid(key, CpusError(key));
  ASSERT_EQ(Pass(key), kIdle);
  clock_.Advance(1min);

  MarkValid(key);
  EXPECT_EQ(Pass(key), kIdle);

  const Condition valid = ConditionOf(Status(key), "ManifestValid");
  EXPECT_EQ(valid.status, "True");
  EXPECT_EQ(valid.reason, "Valid");
  EXPECT_EQ(valid.last_transition_time, kT0 + 2s + 1min);
  EXPECT_EQ(fake().BootCount(key), 1);
}

// Was: a VM whose manifest has never been valid gets no status at all.
// Input: the first manifest of prod/web is invalid (DesiredEntry.invalid set,
// vm null; DesiredCache::Keys() lists the key).
// Actual: Reconcile returns idle at `!desired.vm && !rt.record` (no VM
// directory: Drop) before WriteStatus runs, so there is no status.json and
// StatusOf() is none; WriteStatus's "(no valid spec yet)" message is
// unreachable. `vmlet get` shows nothing for the VM.
// Expected (docs/manifests.md: the error is "shown in that VM's status (condition
// ManifestValid=False)"): a status with ManifestValid=False whose message is
// the error and "(no valid spec yet)"; nothing booted.
TEST_F(ReconcilerTest, InvalidManifestOfANewVmIsShownInItsStatus) {
  const api::VmKey key = Spec().key();
  MarkInvalid(key, CpusError(key));

  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().BootCount(key), 0);
  const Condition valid = ConditionOf(Status(key), "ManifestValid");
  EXPECT_EQ(valid.status, "False");
  EXPECT_EQ(valid.message,
            "/etc/vmlet/manifests/web.yaml:7:9: spec.cpus: must be at least 1 (no valid spec yet)");
}

TEST_F(ReconcilerTest, VmWhoseManifestBrokeWhileVmletWasDownKeepsRunningUntouched) {
  const api::VmKey key = BootToReady(Spec());
  const pid_t pid = Record(key).vmm->process.pid;
  // vmlet goes down; the manifest breaks; the new vmlet has no last good spec.
  manifests_.erase(key);
  invalid_[key] = CpusError(key);
  RestartVmlet();

  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Pass(key), kIdle);

  EXPECT_EQ(fake().LiveVmms(), 1u);
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Record(key).vmm->process.pid, pid);
  EXPECT_FALSE(Record(key).stop_requested);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.desired_state, "Unknown");
  EXPECT_EQ(ConditionOf(status, "ManifestValid").status, "False");

  // Fixed: converges on the manifest again, without a reboot.
  Want(Spec());
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).desired_state, "Running");
  EXPECT_EQ(ConditionOf(Status(key), "ManifestValid").status, "True");
}

// ===========================================================================
// Drivers that fail.

TEST_F(ReconcilerTest, VmWhoseDriverIsNotAvailableFailsWithoutRetrying) {
  api::VmSpec spec = Spec();
  spec.driver = "qemu";
  const api::VmKey key = Want(spec);

  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Pass(key), kIdle);

  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason, "driver \"qemu\" is not available in this vmlet");
  EXPECT_EQ(fake().BootCount(key), 0);
  EXPECT_EQ(fake_b().BootCount(key), 0);

  spec.driver = "fake";
  Want(spec);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(fake().BootCount(key), 1);
}

TEST_F(ReconcilerTest, FailedBootIsARetryableErrorUntilABootSucceeds) {
  const api::VmKey key = Spec().key();
  FailBoots(key, 2);
  Want(Spec());

  for (int i = 0; i < 2; ++i) {
    api::StatusOr<ReconcileResult> result = reconciler().Reconcile(key);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status(), api::Status::Unavailable("injected boot failure"));
    EXPECT_TRUE(result.status().IsRetryable());
  }
  EXPECT_EQ(fake().BootCount(key), 0);
  EXPECT_EQ(Pass(key), kNow);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_THAT(Events(key), ElementsAre("BootFailed", "BootFailed", "Booted"));
  EXPECT_EQ(Record(key).restart_count, 0u);
}

TEST_F(ReconcilerTest, BootErrorNoRetryCanHelpIsShownAndWaitsForTheManifestToChange) {
  const api::VmKey key = Spec().key();
  boot_errors().boot_error = api::Status::InvalidArgument("kernel /nope does not exist");
  Want(Spec());

  // Not an error for the work queue: no retry with backoff.
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(boot_errors().boot_calls, 1);
  VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Failed");
  EXPECT_EQ(status.reason,
            "BootFailed: kernel /nope does not exist (not retried until the manifest changes)");
  EXPECT_EQ(ConditionOf(status, "Ready").status, "False");
  EXPECT_EQ(ConditionOf(status, "Ready").reason, "BootFailed");
  EXPECT_EQ(ConditionOf(status, "Ready").message, status.reason);
  EXPECT_EQ(ConditionOf(status, "Converged").status, "False");
  EXPECT_THAT(Events(key), ElementsAre("BootFailed"));
}

TEST_F(ReconcilerTest, BootErrorNoRetryCanHelpIsNotRetriedOnResyncOrLater) {
  const api::VmKey key = Spec().key();
  boot_errors().boot_error = api::Status::FailedPrecondition("the driver cannot honour this spec");
  Want(Spec());
  EXPECT_EQ(Pass(key), kIdle);

  // The cause is gone, but the manifest is the same: a resync's passes, an
  // hour later, boot nothing.
  boot_errors().boot_error.reset();
  clock_.Advance(1h);
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(Pass(key), kIdle);
  EXPECT_EQ(boot_errors().boot_calls, 1);
  EXPECT_EQ(fake().BootCount(key), 0);
  EXPECT_EQ(Status(key).phase, "Failed");
  EXPECT_THAT(Events(key), ElementsAre("BootFailed"));
}

TEST_F(ReconcilerTest, BootErrorNoRetryCanHelpIsRetriedWhenTheManifestChanges) {
  const api::VmKey key = Spec().key();
  boot_errors().boot_error = api::Status::InvalidArgument("kernel /nope does not exist");
  Want(Spec());
  EXPECT_EQ(Pass(key), kIdle);

  boot_errors().boot_error.reset();
  api::VmSpec fixed = Spec();
  fixed.kernel = "/var/lib/vmlet/images/vmlinuz-fixed";
  Want(fixed);
  EXPECT_EQ(Pass(key), kNow);
  EXPECT_EQ(boot_errors().boot_calls, 2);
  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).phase, "Starting");
  EXPECT_EQ(ConditionOf(Status(key), "Ready").reason, "Starting");
  EXPECT_THAT(Events(key), ElementsAre("BootFailed", "Booted"));
}

TEST_F(ReconcilerTest, RetryableBootErrorStillRetriesWithBackoff) {
  const api::VmKey key = Spec().key();
  boot_errors().boot_error = api::Status::Unavailable("the VMM is busy");
  Want(Spec());
  for (int i = 0; i < 3; ++i) {
    api::StatusOr<ReconcileResult> result = reconciler().Reconcile(key);
    ASSERT_FALSE(result.ok());
    EXPECT_TRUE(result.status().IsRetryable());
  }
  EXPECT_EQ(boot_errors().boot_calls, 3);
}

// ===========================================================================
// DiskLocked: a boot refused because another process holds a disk image's
// lock (the VM still running on the host it moves from, on shared storage).

TEST_F(ReconcilerTest, VmmThatExitsOnALockedDiskIsRetriedWithBackoffAndIsNoCrash) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kNever;  // a crash would never be retried
  const api::VmKey key = spec.key();
  drivers::FakeFaults faults;
  faults.disk_locked_boots = 3;
  fake().SetFaults(key, faults);
  Want(spec);

  // Each attempt: a VMM starts, exits at once, and the next boot waits
  // 1 s, then 2 s, then 4 s.
  for (const auto delay : {1s, 2s, 4s}) {
    const int boots = fake().BootCount(key);
    EXPECT_EQ(Settle(key), After(delay));
    EXPECT_EQ(fake().BootCount(key), boots + 1);
    const VmStatus status = Status(key);
    EXPECT_EQ(status.phase, "Starting");
    EXPECT_TRUE(status.reason.starts_with(
        "DiskLocked: disk image /srv/shared/fake.img is locked by another process"))
        << status.reason;
    EXPECT_EQ(ConditionOf(status, "Ready").reason, "DiskLocked");
    EXPECT_EQ(ConditionOf(status, "CrashLoopBackOff").status, "False");
    EXPECT_EQ(status.restart_count, 0u);
    // No boot before the delay is over.
    clock_.Advance(delay - 1ms);
    EXPECT_EQ(Pass(key), After(1ms));
    EXPECT_EQ(fake().BootCount(key), boots + 1);
    clock_.Advance(1ms);
  }
  Converge(key);

  EXPECT_EQ(fake().BootCount(key), 4);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Ready");
  EXPECT_EQ(status.reason, "");
  EXPECT_EQ(status.restart_count, 0u);
  EXPECT_EQ(Record(key).consecutive_failures, 0);
  EXPECT_THAT(restarts_, IsEmpty());
  // One warning for the wait, not one per attempt; never Crashed; the phase
  // never left Starting (the first phase reported) until the guest ran.
  EXPECT_THAT(Events(key), ElementsAre("Booted", "DiskLocked", "Booted", "Booted", "Booted",
                                       "DiskUnlocked", "Ready"));
  EXPECT_THAT(Transitions(), ElementsAre("Starting->Ready"));
}

TEST_F(ReconcilerTest, BootRefusedAtOnceForALockedDiskIsRetriedWithBackoffNotAsAnError) {
  const api::VmKey key = Spec().key();
  drivers::FakeFaults faults;
  faults.disk_locked_boot_errors = 2;
  fake().SetFaults(key, faults);
  Want(Spec());

  EXPECT_EQ(Pass(key), After(1s));  // not an error: the work queue's error backoff is not used
  EXPECT_EQ(fake().BootCount(key), 0);
  EXPECT_EQ(Status(key).phase, "Starting");
  EXPECT_EQ(ConditionOf(Status(key), "Ready").reason, "DiskLocked");
  clock_.Advance(1s);
  EXPECT_EQ(Pass(key), After(2s));
  clock_.Advance(2s);
  Converge(key);

  EXPECT_EQ(fake().BootCount(key), 1);
  EXPECT_EQ(Status(key).phase, "Ready");
  EXPECT_THAT(Events(key), ElementsAre("DiskLocked", "Booted", "DiskUnlocked", "Ready"));
}

TEST_F(ReconcilerTest, AnImageTheVmmCannotOpenIsImageNotReadableAndRetriedWithBackoff) {
  api::VmSpec spec = Spec();
  spec.restart_policy = api::RestartPolicy::kNever;
  const api::VmKey key = spec.key();
  drivers::FakeFaults faults;
  faults.image_not_readable_boot_errors = 2;
  fake().SetFaults(key, faults);
  Want(spec);

  EXPECT_EQ(Pass(key), After(1s));
  VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Starting");
  EXPECT_EQ(status.reason, "ImageNotReadable: spec.kernel " + spec.kernel +
                               ": user vmlet-vmm cannot read it (Permission denied) (injected); "
                               "boot attempt 1 refused");
  EXPECT_EQ(ConditionOf(status, "Ready").reason, "ImageNotReadable");
  clock_.Advance(1s);
  EXPECT_EQ(Pass(key), After(2s));
  clock_.Advance(2s);
  Converge(key);

  EXPECT_EQ(Status(key).phase, "Ready");
  EXPECT_EQ(Status(key).restart_count, 0u);
  EXPECT_THAT(Events(key), ElementsAre("ImageNotReadable", "Booted", "ImageReadable", "Ready"));
}

TEST_F(ReconcilerTest, DiskLockedBackoffIsCappedAt30Seconds) {
  const api::VmKey key = Spec().key();
  drivers::FakeFaults faults;
  faults.disk_locked_boot_errors = 8;
  fake().SetFaults(key, faults);
  Want(Spec());

  std::vector<Requeue> waits;
  for (int i = 0; i < 8; ++i) {
    const Requeue r = Pass(key);
    waits.push_back(r);
    if (r.after) clock_.Advance(*r.after);
  }
  EXPECT_THAT(waits, ElementsAre(After(1s), After(2s), After(4s), After(8s), After(16s), After(30s),
                                 After(30s), After(30s)));
}

TEST_F(ReconcilerTest, WaitingForALockedDiskEndsAtOnceWhenTheSpecChangesOrTheVmIsStopped) {
  api::VmSpec spec = Spec();
  const api::VmKey key = spec.key();
  drivers::FakeFaults faults;
  faults.disk_locked_boot_errors = 5;
  fake().SetFaults(key, faults);
  Want(spec);
  EXPECT_EQ(Pass(key), After(1s));
  EXPECT_EQ(Pass(key), After(1s));  // still waiting

  // The operator points the VM at another disk: tried now, not in 1 s.
  spec.cpus = 2;
  Want(spec);
  EXPECT_EQ(Pass(key), After(2s));
  EXPECT_EQ(LastEvent(key), "DiskLocked");

  spec.desired_state = api::DesiredState::kStopped;
  Want(spec);
  EXPECT_EQ(Pass(key), kIdle);
  const VmStatus status = Status(key);
  EXPECT_EQ(status.phase, "Stopped");
  EXPECT_EQ(status.reason, "");
  EXPECT_EQ(ConditionOf(status, "Ready").reason, "Stopped");
}

// ===========================================================================
// Hooks.

TEST_F(ReconcilerTest, HooksReportBootDurationsPhaseChangesAndRestarts) {
  const api::VmKey key = BootToReady(Spec());
  clock_.Advance(1min);
  Crash(key);
  ASSERT_EQ(Pass(key), After(10s));
  clock_.Advance(10s);
  Converge(key);  // boots, Ready, then 5 min until the crash loop is forgiven

  EXPECT_THAT(boot_durations_, ElementsAre(Pair("fake", 2.0), Pair("fake", 2.0)));
  EXPECT_THAT(Transitions(), ElementsAre("Starting->Ready", "Ready->Failed", "Failed->Starting",
                                         "Starting->Ready"));
  ASSERT_EQ(phase_changes_.size(), 4u);
  EXPECT_EQ(phase_changes_[0].key, key);
  EXPECT_EQ(phase_changes_[0].seconds, 2.0);
  EXPECT_EQ(phase_changes_[1].seconds, 60.0);
  EXPECT_EQ(phase_changes_[2].seconds, 10.0);
  EXPECT_EQ(phase_changes_[3].seconds, 2.0);
  EXPECT_THAT(restarts_, ElementsAre(Pair(key, "the VMM crashed")));
  EXPECT_THAT(mismatches_, IsEmpty());
  EXPECT_THAT(forgotten_, IsEmpty());
}

}  // namespace
}  // namespace vmlet::controller
