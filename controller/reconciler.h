#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "api/clock.h"
#include "api/status.h"
#include "api/vm_key.h"
#include "controller/desired_cache.h"
#include "controller/state_store.h"
#include "controller/vm_runtime.h"
#include "drivers/boot_refusal.h"
#include "drivers/vm_driver.h"
#include "drivers/vmm_identity.h"

namespace vmlet::controller {

// One driver and the identity checker for the VMMs it launches.
struct DriverSlot {
  drivers::VmDriver* driver = nullptr;
  drivers::VmmIdentity* identity = nullptr;
};

// What one reconcile pass asks of the work queue.
struct ReconcileResult {
  // Look at the key again after this long (zero: at once); none: only when
  // something changes (or at the next resync).
  std::optional<std::chrono::nanoseconds> requeue_after;
};

// Hooks for metrics and logs; every one may be empty.
struct ReconcilerHooks {
  std::function<void(const std::string& driver)> identity_mismatch;
  std::function<void(const std::string& driver, double seconds)> boot_duration;
  std::function<void(const api::VmKey&, const std::string& reason)> restarted;
  // Phase changes: (key, driver, from, to, seconds spent in `from`).
  std::function<void(const api::VmKey&, const std::string& driver, const std::string& from,
                     const std::string& to, double seconds)>
      phase_changed;
  // A VM left this node's care (deleted and cleaned up).
  std::function<void(const api::VmKey&)> forgotten;
  // After every pass that writes the VM's status, changed or not: its driver
  // (the live VMM's, else the manifest's; empty when neither is known), phase
  // and desired state ("Running", "Paused", "Stopped", "Deleted" or
  // "Unknown"), as status.json shows them.
  std::function<void(const api::VmKey&, const std::string& driver, const std::string& phase,
                     const std::string& desired)>
      status;
  std::function<void(const api::VmKey&, const Event&)> event;
};

// Makes one VM's VMM match its manifest, one step at a time (docs/reconcile.md).
//
// Level-triggered, as controller-runtime's Reconciler: Reconcile() gets only
// a key; it reads the desired state (DesiredCache) and observes the VMM
// (record + identity + driver) afresh, takes at most one step toward the
// desired state (boot, pause, resume, graceful stop, kill, clean up), records
// that step, writes status, and says when to look again. An error means
// "retry with backoff".
//
// The store is read once per pass (StateStore::LoadVm: whether the VM
// directory exists; on the first pass also record.json and status.json,
// which the reconciler then keeps in memory), and what the pass changed is
// written in one StateStore::Commit at its end: record.json first (fsynced
// when it follows an action on the host: a VMM launched, asked to stop,
// gone; atomic only for bookkeeping), then events, then status.json. A
// step changes the host at most once per pass and nothing else is written
// before its record; a record adopted from a running VMM is committed at
// once.
//
// clang-format off
//   desired \ observed | absent/Stopped | Starting | Running/Ready | Paused            | Failed
//   Running            | boot           | wait     | -             | resume            | restartPolicy: boot after backoff, or stay
//   Paused             | boot           | wait     | pause         | -                 | as above, then pause
//   Stopped            | -              | stop     | stop          | resume, stop      | clean up
//   deleted            | clean up       | stop, clean up (resuming a paused VM first)  | clean up
// clang-format on
//
// Stop is graceful (driver Shutdown, the ACPI power button) for the grace
// period of the current manifest (the last one once deleted), then forced (Kill). A paused
// VM is resumed first, so its guest can shut down cleanly. A running VM
// whose boot hash changed is recreated: stopped gracefully, then booted with
// the new spec. A VMM that exits without being asked to is a crash (or, for
// a guest power-off, a stop): RestartPolicy Always boots it again, OnFailure
// only after a failure, Never leaves it; each restart waits 10 s x n^2
// (jitter, 5 min cap; n = consecutive failures, reset after 5 min Ready), and
// meanwhile condition CrashLoopBackOff says when the next attempt is.
// A refused boot (drivers/boot_refusal.h) is not a crash: another
// process holds a disk image's lock (a VM moving from another host on
// shared storage), or the VMM's user cannot open an image. Phase Starting,
// reason DiskLocked or ImageNotReadable, another boot after 1 s, 2 s, 4 s
// ... 30 s, no restart counted, whatever the restartPolicy.
// A boot error no retry can help (the driver's InvalidArgument or
// FailedPrecondition: a spec it cannot honour) is not retried with backoff:
// phase Failed, reason "BootFailed: ...", Ready condition reason BootFailed,
// and no boot, not even on a resync, until the VM's manifest changes.
// Deletion and Stopped never wait for a backoff.
//
// Nothing at all is done before the desired state has been read once
// (DesiredCache::synced): an unread manifest directory deletes nothing.
//
// No driver call is made on a VMM whose identity VmmIdentity has not just
// confirmed; a VMM that fails the check is treated as exited and never
// signalled (a mismatch is counted).
//
// Thread-safe for different keys. The work queue guarantees that one key is
// never reconciled by two threads at once.
class Reconciler {
 public:
  struct Options {
    std::chrono::seconds boot_call_timeout{60};
    std::chrono::seconds call_timeout{10};
    // How often a VM that is starting or stopping is looked at when its
    // driver gives no better time.
    std::chrono::milliseconds poll_interval{1000};
    std::chrono::minutes crash_loop_reset{5};
  };

  // `jitter` returns a factor in [1.0, 1.1) for crash-loop delays; tests pass
  // one that returns 1.0.
  Reconciler(const api::Clock& clock, DesiredCache& desired, StateStore& store,
             std::map<std::string, DriverSlot> drivers, Options options,
             std::function<double()> jitter, ReconcilerHooks hooks);
  ~Reconciler();

  api::StatusOr<ReconcileResult> Reconcile(const api::VmKey& key);

  // The VM that a driver's change listener names by directory.
  std::optional<api::VmKey> KeyForVmDir(const std::string& vm_dir) const;

  // The status last written for `key` (for tests and the API).
  std::optional<VmStatus> StatusOf(const api::VmKey& key) const;

 private:
  using Runtime = VmRuntime;
  struct Observed;
  using Mono = api::Clock::MonotonicTime;
  // A pass that ends early: its result; none: the pass goes on.
  using EarlyEnd = std::optional<api::StatusOr<ReconcileResult>>;

  Runtime& RuntimeFor(const api::VmKey& key);
  void Drop(const api::VmKey& key);

  // --- One pass: read what the store holds, decide, write what changed.
  api::StatusOr<ReconcileResult> Pass(const api::VmKey& key, Runtime& rt,
                                      const DesiredEntry& desired);
  // Reads the VM's stored view (one store call): whether its directory
  // exists, and on the first pass its record and status.
  api::Status Load(const api::VmKey& key, Runtime& rt);
  // The first pass: takes the stored record and status on.
  api::Status TakeStored(const api::VmKey& key, Runtime& rt, StateStore::StoredVm stored);
  api::Status Rediscover(const api::VmKey& key, Runtime& rt);
  // A VM with neither a manifest nor a record: its status says why it
  // cannot run, or its leftovers are removed.
  api::StatusOr<ReconcileResult> Unowned(const api::VmKey& key, Runtime& rt,
                                         const DesiredEntry& desired);
  // Confirms the recorded VMM and observes it into `observed`.
  EarlyEnd ObserveVmm(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired,
                      DriverSlot& slot, Observed& observed);
  // Writes what the pass changed (one store call); the record's error, if any.
  api::Status Commit(const api::VmKey& key, Runtime& rt);

  // --- The step toward the desired state.
  api::StatusOr<ReconcileResult> Step(const api::VmKey& key, Runtime& rt,
                                      const DesiredEntry& desired, DriverSlot& slot,
                                      const Observed& observed);
  api::StatusOr<ReconcileResult> StepWithVmm(const api::VmKey& key, Runtime& rt,
                                             const manifests::DesiredVm* want, DriverSlot& slot,
                                             const Observed& observed);
  api::StatusOr<ReconcileResult> StepWithoutVmm(const api::VmKey& key, Runtime& rt,
                                                const manifests::DesiredVm* want, DriverSlot& slot);
  // Starting or Running but not yet Ready: kills it past its readiness
  // timeout, else says when to look again.
  api::StatusOr<ReconcileResult> AwaitReady(const api::VmKey& key, Runtime& rt,
                                            const manifests::DesiredVm& want, DriverSlot& slot,
                                            const Observed& observed);
  // The guest is Ready: records it once per boot (event, boot duration).
  void NoteReady(const api::VmKey& key, Runtime& rt, const Observed& observed);
  // Converged: a VM Ready long enough leaves its crash loop.
  ReconcileResult LeaveCrashLoop(Runtime& rt);
  // desiredState Stopped and no VMM: whatever ended it before is settled.
  void SettleStopped(Runtime& rt);
  // No VMM after an exit: Idle when the restart policy says no, the wait
  // when a crash-loop backoff runs; none: boot now.
  std::optional<ReconcileResult> RestartWait(Runtime& rt, const manifests::DesiredVm& want);
  api::StatusOr<ReconcileResult> VmmGone(const api::VmKey& key, Runtime& rt, DriverSlot& slot,
                                         const drivers::VmmIdentity::Check& check);
  // Counts an unrequested exit (a crash or a power-off) toward the crash loop.
  void RecordExit(const api::VmKey& key, Runtime& rt, const api::VmState& exit);
  api::StatusOr<ReconcileResult> Boot(const api::VmKey& key, Runtime& rt,
                                      const manifests::DesiredVm& want, DriverSlot& slot);
  api::StatusOr<ReconcileResult> Stop(const api::VmKey& key, Runtime& rt, DriverSlot& slot,
                                      const drivers::ConfirmedVmm& vmm, const api::VmState& state,
                                      const std::string& why);
  api::StatusOr<ReconcileResult> CleanUp(const api::VmKey& key, Runtime& rt);

  // --- Refused boots (drivers/boot_refusal.h): not a crash; the
  // status says why, and the boot is tried again after a backoff.
  // The refusal a failed Boot() call or a VMM's exit state carries, if any.
  ReconcileResult WaitToBoot(const api::VmKey& key, Runtime& rt,
                             const drivers::BootRefusal& refusal, const std::string& spec_hash);
  // The wait before the next boot of a refused spec; none: boot now.
  std::optional<ReconcileResult> RefusedBootWait(const Runtime& rt,
                                                 const manifests::DesiredVm& want) const;
  // The VMM runs: a refusal that was under way is over.
  void NoteBootAccepted(const api::VmKey& key, Runtime& rt);

  // --- status.json and events.
  // Stages the VM's status (DeriveStatus; written by Commit when it
  // changed) and reports it to the hooks.
  void WriteStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired);
  void ReportStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired,
                    const VmStatus& status);
  // record.json changed: Commit writes it, durably if any change asked so.
  void StageRecord(Runtime& rt,
                   StateStore::Durability durability = StateStore::Durability::kDurable);
  void Emit(const api::VmKey& key, Runtime& rt, EventType type, const std::string& reason,
            const std::string& message);
  drivers::Deadline DeadlineIn(std::chrono::nanoseconds d) const;

  const api::Clock& clock_;
  DesiredCache& desired_;
  StateStore& store_;
  std::map<std::string, DriverSlot> drivers_;
  const Options options_;
  std::function<double()> jitter_;
  ReconcilerHooks hooks_;

  mutable std::mutex mu_;
  std::map<api::VmKey, std::unique_ptr<Runtime>> runtimes_;  // guarded by mu_ (the map only)
  std::map<std::string, api::VmKey> by_dir_;                 // guarded by mu_
};

}  // namespace vmlet::controller
