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
#include "drivers/boot_refusal.h"
#include "drivers/vmm_identity.h"
#include "drivers/vm_driver.h"

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

// Makes one VM's VMM match its manifest, one step at a time (DESIGN §4).
//
// Level-triggered, as controller-runtime's Reconciler: Reconcile() gets only
// a key; it reads the desired state (DesiredCache) and observes the VMM
// (record + identity + driver) afresh, takes at most one step toward the
// desired state (boot, pause, resume, graceful stop, kill, clean up), writes
// the record before and after any step that changes the host, writes status,
// and says when to look again. An error means "retry with backoff".
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
  struct Runtime;
  struct Observed;

  Runtime& RuntimeFor(const api::VmKey& key);
  void Drop(const api::VmKey& key);
  api::Status LoadOnce(const api::VmKey& key, Runtime& rt);
  api::Status Rediscover(const api::VmKey& key, Runtime& rt);
  api::StatusOr<ReconcileResult> Step(const api::VmKey& key, Runtime& rt,
                                      const DesiredEntry& desired, DriverSlot& slot,
                                      const Observed& observed);
  api::StatusOr<ReconcileResult> VmmGone(const api::VmKey& key, Runtime& rt, DriverSlot& slot,
                                         const drivers::VmmIdentity::Check& check);
  api::StatusOr<ReconcileResult> Boot(const api::VmKey& key, Runtime& rt,
                                      const manifests::DesiredVm& want, DriverSlot& slot);
  api::StatusOr<ReconcileResult> Stop(const api::VmKey& key, Runtime& rt, DriverSlot& slot,
                                      const drivers::ConfirmedVmm& vmm, const api::VmState& state,
                                      const std::string& why);
  api::StatusOr<ReconcileResult> CleanUp(const api::VmKey& key, Runtime& rt);
  // A refused boot (another process holds a disk image's lock, the VMM's
  // user cannot open an image): the status says why, and the boot is tried
  // again after a backoff.
  ReconcileResult WaitToBoot(const api::VmKey& key, Runtime& rt,
                             const drivers::BootRefusal& refusal, const std::string& spec_hash);
  api::Status SaveRecord(const api::VmKey& key, Runtime& rt,
                         StateStore::Durability durability = StateStore::Durability::kDurable);
  void Emit(const api::VmKey& key, const std::string& type, const std::string& reason,
            const std::string& message);
  void WriteStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired,
                   const Observed& observed);
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
