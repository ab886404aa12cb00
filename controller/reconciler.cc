#include "controller/reconciler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "controller/rate_limiter.h"
#include "drivers/boot_refusal.h"

namespace vmlet::controller {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using Mono = api::Clock::MonotonicTime;

double Seconds(nanoseconds d) { return std::chrono::duration<double>(d).count(); }

std::string Describe(nanoseconds d) {
  const auto ms = duration_cast<milliseconds>(d).count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  const auto s = (ms + 500) / 1000;
  if (s < 120) return std::to_string(s) + "s";
  return std::to_string(s / 60) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
}

// A refused boot (DiskLocked, ImageNotReadable) is tried again after 1 s,
// 2 s, 4 s ... 30 s at most: a disk's holder is usually a VM stopping
// gracefully on another host, which takes its grace period at most.
nanoseconds BootRefusedDelay(int attempts, double jitter) {
  const double base = std::min(30.0, std::ldexp(1.0, std::clamp(attempts - 1, 0, 5)));
  return duration_cast<nanoseconds>(std::chrono::duration<double>(base * jitter));
}

ReconcileResult After(nanoseconds d) { return ReconcileResult{std::max(d, nanoseconds(0))}; }
ReconcileResult Now() { return ReconcileResult{nanoseconds(0)}; }
ReconcileResult Idle() { return ReconcileResult{std::nullopt}; }

}  // namespace

// What the reconciler keeps in memory about one VM between passes. Only the
// worker that holds the key touches it.
struct Reconciler::Runtime {
  bool loaded = false;
  std::optional<VmRecord> record;
  bool record_dirty = false;       // the last SaveRecord failed: save before anything else
  std::optional<VmStatus> status;  // as last written
  api::VmState view = api::VmState::Stopped();  // the phase to report
  std::string driver;
  std::optional<Mono> boot_started;
  std::optional<Mono> ready_since;
  std::optional<Mono> stop_deadline;
  std::optional<Mono> next_restart_at;
  std::optional<double> last_boot_seconds;
  std::string pending_failure;  // why vmlet is killing the VMM as a failure (readiness timeout)
  std::string stop_reason;      // why vmlet is stopping it
  std::string phase;            // the last phase reported to hooks
  bool ready_seen = false;      // this boot's Ready was recorded (event, boot duration)
  bool forget = false;          // cleaned up: drop this runtime when the pass ends
  std::optional<milliseconds> recheck_hint;  // the driver's, from this pass's observation
  Mono phase_since{};
  // The boot was refused for a reason another boot gets past once it is
  // cleared (drivers/boot_refusal.h): a disk image another process
  // holds locked (a move from another host under way), an image the VMM's
  // user cannot open. Kept until the VMM runs, or the VM is no longer meant
  // to.
  struct BootWait {
    std::string reason;     // DiskLocked, ImageNotReadable
    std::string detail;     // the driver's words
    int attempts = 0;       // boots refused so far
    Mono retry_at{};        // the next boot, not before
    std::string spec_hash;  // the spec that was refused: a new one is tried at once
  };
  std::optional<BootWait> boot_wait;
};

// What one pass saw of the VMM.
struct Reconciler::Observed {
  bool alive = false;
  drivers::Observation observation{api::VmState::Stopped(), std::nullopt, std::nullopt};
  std::optional<drivers::ConfirmedVmm> vmm;
};

Reconciler::Reconciler(const api::Clock& clock, DesiredCache& desired, StateStore& store,
                       std::map<std::string, DriverSlot> drivers, Options options,
                       std::function<double()> jitter, ReconcilerHooks hooks)
    : clock_(clock),
      desired_(desired),
      store_(store),
      drivers_(std::move(drivers)),
      options_(options),
      jitter_(std::move(jitter)),
      hooks_(std::move(hooks)) {}

Reconciler::~Reconciler() = default;

drivers::Deadline Reconciler::DeadlineIn(nanoseconds d) const { return clock_.MonotonicNow() + d; }

Reconciler::Runtime& Reconciler::RuntimeFor(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  std::unique_ptr<Runtime>& rt = runtimes_[key];
  if (!rt) {
    rt = std::make_unique<Runtime>();
    rt->phase_since = clock_.MonotonicNow();
  }
  return *rt;
}

void Reconciler::Drop(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  runtimes_.erase(key);
  for (auto it = by_dir_.begin(); it != by_dir_.end();) {
    it = it->second == key ? by_dir_.erase(it) : std::next(it);
  }
}

std::optional<api::VmKey> Reconciler::KeyForVmDir(const std::string& vm_dir) const {
  std::lock_guard lock(mu_);
  auto it = by_dir_.find(vm_dir);
  if (it == by_dir_.end()) return std::nullopt;
  return it->second;
}

std::optional<VmStatus> Reconciler::StatusOf(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  auto it = runtimes_.find(key);
  if (it == runtimes_.end()) return std::nullopt;
  return it->second->status;
}

void Reconciler::Emit(const api::VmKey& key, const std::string& type, const std::string& reason,
                      const std::string& message) {
  Event event{clock_.WallNow(), type, reason, message};
  if (type == "Warning") {
    spdlog::warn("namespace={} name={} event={} {}", key.ns, key.name, reason, message);
  } else {
    spdlog::info("namespace={} name={} event={} {}", key.ns, key.name, reason, message);
  }
  if (store_.VmDirExists(key)) {
    api::Status s = store_.AppendEvent(key, event);
    if (!s.ok())
      spdlog::warn("namespace={} name={} cannot record event: {}", key.ns, key.name, s.message());
  }
  if (hooks_.event) hooks_.event(key, event);
}

api::Status Reconciler::SaveRecord(const api::VmKey& key, Runtime& rt,
                                   StateStore::Durability durability) {
  api::Status s = store_.SaveRecord(key, *rt.record, durability);
  rt.record_dirty = !s.ok();
  if (!s.ok()) {
    spdlog::error("namespace={} name={} cannot save record.json: {}", key.ns, key.name,
                  s.message());
  }
  return s;
}

api::Status Reconciler::LoadOnce(const api::VmKey& key, Runtime& rt) {
  if (rt.loaded) return api::Status::Ok();
  api::StatusOr<StateStore::LoadedRecord> loaded = store_.LoadRecord(key);
  if (!loaded.ok()) return loaded.status();
  rt.record = loaded->record;
  std::optional<VmStatus> status = store_.LoadStatus(key);
  {
    std::lock_guard lock(mu_);
    rt.status = std::move(status);
  }
  rt.loaded = true;
  if (loaded->quarantined_to) {
    Emit(key, "Warning", "RecordQuarantined",
         "record.json was corrupt (" + loaded->problem + "); moved to " + *loaded->quarantined_to +
             "; the VM is re-derived from the host");
  }
  if (rt.status && rt.status->last_boot_duration_seconds) {
    rt.last_boot_seconds = rt.status->last_boot_duration_seconds;
  }
  if (!rt.record && store_.VmDirExists(key)) {
    // A VM directory without a usable record: a VMM may still run there
    // (the record was corrupt, or vmlet died between launching the VMM and
    // recording it). Adopt it rather than boot a second one.
    if (api::Status s = Rediscover(key, rt); !s.ok()) {
      rt.loaded = false;
      return s;
    }
  }
  if (!rt.record) return api::Status::Ok();
  rt.driver = rt.record->driver;
  // Monotonic times do not survive a restart: rebuild them from the record's
  // wall times, so timeouts, grace periods and the crash-loop reset go on
  // where they were.
  const Mono mono_now = clock_.MonotonicNow();
  const WallTime wall_now = clock_.WallNow();
  auto since = [&](WallTime then) { return mono_now - (wall_now - then); };
  if (rt.record->vmm) {
    std::lock_guard lock(mu_);
    by_dir_[rt.record->vmm->vm_dir] = key;
  }
  if (rt.record->vmm && rt.record->boot_requested_at)
    rt.boot_started = since(*rt.record->boot_requested_at);
  if (rt.record->vmm && rt.record->ready_at) {
    rt.ready_since = since(*rt.record->ready_at);
    rt.ready_seen = true;
  }
  if (!rt.record->vmm && rt.record->restart_not_before) {
    rt.next_restart_at = since(*rt.record->restart_not_before);
  }
  if (rt.record->stop_requested && rt.record->stop_requested_at) {
    rt.stop_deadline =
        since(*rt.record->stop_requested_at) + seconds(rt.record->stop_grace_seconds);
  }
  if (!rt.record->last_exit_phase.empty()) {
    rt.view = rt.record->last_exit_phase == "Failed"
                  ? api::VmState::Failed(rt.record->last_exit_reason)
                  : api::VmState::Stopped();
  }
  return api::Status::Ok();
}

api::Status Reconciler::Rediscover(const api::VmKey& key, Runtime& rt) {
  const DesiredEntry desired = desired_.Get(key);
  const std::string vm_dir = store_.VmDir(key);
  for (auto& [name, slot] : drivers_) {
    api::StatusOr<std::optional<drivers::VmmHandle>> found = slot.driver->Rediscover(vm_dir);
    if (!found.ok()) return found.status().WithContext("looking for a VMM in " + vm_dir);
    if (!*found) continue;
    VmRecord record;
    record.driver = name;
    record.vmm = **found;
    // What it was booted with is unknown: take it to be the current spec,
    // so losing a record never reboots a guest.
    record.spec_hash = desired.vm ? desired.vm->spec_hash : "";
    // When it booted is unknown too: no readiness timeout, no boot duration.
    if (desired.vm) record.stop_grace_seconds = desired.vm->spec.stop_grace_period.count();
    rt.record = std::move(record);
    if (api::Status s = SaveRecord(key, rt); !s.ok()) return s;
    Emit(key, "Warning", "Adopted",
         "found " + name + " VMM pid " + std::to_string(found->value().process.pid) +
             " running without a record; adopted it");
    return api::Status::Ok();
  }
  return api::Status::Ok();
}

api::StatusOr<ReconcileResult> Reconciler::Reconcile(const api::VmKey& key) {
  // Until the manifest directory has been read once, a VM missing from the
  // desired state may only be unread, not deleted: touch nothing. (The
  // manager enqueues every VM again after the first full scan.)
  if (!desired_.synced()) return Idle();
  Runtime& rt = RuntimeFor(key);
  const DesiredEntry desired = desired_.Get(key);
  if (api::Status s = LoadOnce(key, rt); !s.ok()) return s;
  if (rt.record_dirty) {
    if (api::Status s = SaveRecord(key, rt); !s.ok()) return s;
  }

  if (!desired.vm && !rt.record) {
    if (desired.invalid) {
      // Never valid, so nothing runs; the status says why.
      rt.view = api::VmState::Failed("the manifest is invalid and there is no earlier valid spec");
      WriteStatus(key, rt, desired, Observed{});
      return Idle();
    }
    if (store_.VmDirExists(key)) {
      api::StatusOr<ReconcileResult> result = CleanUp(key, rt);
      if (rt.forget) Drop(key);
      return result;
    }
    Drop(key);
    return Idle();
  }

  // A running VMM belongs to the driver that launched it; a new boot to the
  // driver the manifest names now.
  const bool has_vmm = rt.record && rt.record->vmm;
  const std::string driver_name =
      has_vmm || !desired.vm ? rt.record->driver : desired.vm->spec.driver;
  auto slot = drivers_.find(driver_name);
  if (slot == drivers_.end() && !has_vmm && !desired.vm) {
    api::StatusOr<ReconcileResult> result = CleanUp(key, rt);
    if (rt.forget) Drop(key);
    return result;
  }
  if (slot == drivers_.end()) {
    rt.view = api::VmState::Failed("driver \"" + driver_name + "\" is not available in this vmlet");
    if (desired.vm) WriteStatus(key, rt, desired, Observed{});
    spdlog::error("namespace={} name={} driver {} is not available", key.ns, key.name, driver_name);
    return Idle();  // nothing to retry until the manifest or vmlet changes
  }
  rt.driver = driver_name;

  Observed observed;
  if (rt.record && rt.record->vmm) {
    drivers::VmmIdentity::Check check = slot->second.identity->Confirm(key, *rt.record->vmm);
    if (check.verdict == drivers::VmmIdentity::Verdict::kUnknown) {
      return api::Status::Unavailable("cannot verify the VMM's identity: " + check.reason);
    }
    if (check.verdict != drivers::VmmIdentity::Verdict::kConfirmed) {
      api::StatusOr<ReconcileResult> result = VmmGone(key, rt, slot->second, check);
      WriteStatus(key, rt, desired, observed);
      return result;
    }
    api::StatusOr<drivers::Observation> o =
        slot->second.driver->Observe(*check.vmm, DeadlineIn(options_.call_timeout));
    if (!o.ok()) {
      if (o.status().IsNotFound()) return Now();  // exited between the check and the look
      return o.status();
    }
    observed.alive = true;
    observed.observation = *o;
    observed.vmm = std::move(check.vmm);
    rt.view = o->state;
    rt.recheck_hint = o->recheck_after;
  }

  api::StatusOr<ReconcileResult> result = Step(key, rt, desired, slot->second, observed);
  if (rt.forget) {
    Drop(key);
    return result;
  }
  WriteStatus(key, rt, desired, observed);
  return result;
}

api::StatusOr<ReconcileResult> Reconciler::VmmGone(const api::VmKey& key, Runtime& rt,
                                                   DriverSlot& slot,
                                                   const drivers::VmmIdentity::Check& check) {
  const drivers::VmmHandle handle = *rt.record->vmm;
  const bool mismatch = check.verdict == drivers::VmmIdentity::Verdict::kMismatch;
  if (mismatch) {
    if (hooks_.identity_mismatch) hooks_.identity_mismatch(rt.record->driver);
    Emit(key, "Warning", "IdentityMismatch",
         "pid " + std::to_string(handle.process.pid) +
             " is no longer the VM's VMM and will not be signalled: " + check.reason);
  }
  const bool requested = rt.record->stop_requested && rt.pending_failure.empty();
  api::VmState exit = api::VmState::Stopped();
  std::optional<drivers::BootRefusal> refused;
  if (!requested) {
    if (!rt.pending_failure.empty()) {
      exit = api::VmState::Failed(rt.pending_failure);
    } else if (mismatch) {
      exit = api::VmState::Failed("the VMM exited (its pid now belongs to another process)");
    } else {
      const drivers::VmmExit ended = slot.driver->ExitState(handle);
      exit = ended.state();
      if (ended.refusal()) refused = *ended.refusal();
    }
  }
  if (api::Status s = slot.driver->Cleanup(handle, DeadlineIn(options_.call_timeout)); !s.ok()) {
    return s;
  }
  slot.identity->Forget(key);
  {
    std::lock_guard lock(mu_);
    by_dir_.erase(handle.vm_dir);
  }

  VmRecord& record = *rt.record;
  record.vmm.reset();
  record.stop_requested = false;
  record.stop_requested_at.reset();
  record.ready_at.reset();
  if (requested) {
    record.last_exit_phase.clear();
    record.last_exit_reason.clear();
    Emit(key, "Normal", "Stopped", "the VMM exited as asked (" + rt.stop_reason + ")");
  } else if (refused) {
    // Not a crash: the VMM could not open a disk or image and never ran a
    // guest. No restart is counted, restartPolicy does not apply.
  } else {
    record.last_exit_phase = std::string(api::PhaseName(exit.phase()));
    record.last_exit_reason = std::string(exit.reason());
    ++record.consecutive_failures;
    const nanoseconds delay =
        CrashLoopDelay(record.consecutive_failures, jitter_ ? jitter_() : 1.0);
    rt.next_restart_at = clock_.MonotonicNow() + delay;
    record.restart_not_before = clock_.WallNow() + duration_cast<WallTime::duration>(delay);
    if (exit.phase() == api::VmState::Phase::kFailed) {
      Emit(key, "Warning", "Crashed", std::string(exit.reason()));
    } else {
      Emit(key, "Normal", "PoweredOff", "the guest powered off");
    }
  }
  rt.view = exit;
  ReconcileResult next = Now();
  if (refused) next = WaitToBoot(key, rt, *refused, record.spec_hash);
  rt.boot_started.reset();
  rt.ready_since.reset();
  rt.ready_seen = false;
  rt.stop_deadline.reset();
  rt.pending_failure.clear();
  rt.stop_reason.clear();
  if (api::Status s = SaveRecord(key, rt); !s.ok()) return s;
  return next;
}

ReconcileResult Reconciler::WaitToBoot(const api::VmKey& key, Runtime& rt,
                                       const drivers::BootRefusal& refusal,
                                       const std::string& spec_hash) {
  const std::string reason(drivers::ReasonName(refusal.reason));
  const bool news =
      !rt.boot_wait || rt.boot_wait->reason != reason || rt.boot_wait->detail != refusal.detail;
  Runtime::BootWait& wait = rt.boot_wait ? *rt.boot_wait : rt.boot_wait.emplace();
  ++wait.attempts;
  wait.reason = reason;
  wait.detail = refusal.detail;
  wait.spec_hash = spec_hash;
  const nanoseconds delay = BootRefusedDelay(wait.attempts, jitter_ ? jitter_() : 1.0);
  wait.retry_at = clock_.MonotonicNow() + delay;
  // Starting, not Failed: the VM is on its way, waiting for the cause to
  // clear (Kubernetes shows a volume still attached elsewhere as a Pod
  // waiting to start, too).
  rt.view = api::VmState::Starting();
  const std::string message =
      refusal.detail + "; boot attempt " + std::to_string(wait.attempts) + " refused, next in " +
      Describe(delay) +
      (refusal.reason == drivers::BootRefusal::Reason::kDiskLocked
           ? " (on shared storage: the VM still runs elsewhere)"
           : "");
  if (news) {
    Emit(key, "Warning", reason, message);
  } else {
    spdlog::info("namespace={} name={} {}: {}", key.ns, key.name, reason, message);
  }
  return After(delay);
}

api::StatusOr<ReconcileResult> Reconciler::Step(const api::VmKey& key, Runtime& rt,
                                                const DesiredEntry& desired, DriverSlot& slot,
                                                const Observed& observed) {
  const manifests::DesiredVm* want = desired.vm.get();
  const Mono now = clock_.MonotonicNow();

  if (!want && desired.invalid) {
    // The manifest is there but has never been valid since vmlet started
    // (it broke while vmlet was down): that is not a deletion. Hands off
    // until it is fixed or removed; the status says why.
    return Idle();
  }
  if (observed.alive) {
    const drivers::ConfirmedVmm& vmm = *observed.vmm;
    const api::VmState& state = observed.observation.state;
    if (!want) return Stop(key, rt, slot, vmm, state, "the VM was deleted");
    if (want->spec.desired_state == api::DesiredState::kStopped) {
      return Stop(key, rt, slot, vmm, state, "desiredState is Stopped");
    }
    if (rt.record->spec_hash != want->spec_hash) {
      return Stop(key, rt, slot, vmm, state, "the spec changed; the VM is recreated");
    }
    if (rt.record->stop_requested) return Stop(key, rt, slot, vmm, state, rt.stop_reason);
    // The grace period is not part of the boot hash: the next stop uses the
    // manifest's current one.
    if (rt.record->stop_grace_seconds != want->spec.stop_grace_period.count()) {
      rt.record->stop_grace_seconds = want->spec.stop_grace_period.count();
      if (api::Status s = SaveRecord(key, rt, StateStore::Durability::kAtomic); !s.ok()) return s;
    }

    const bool want_paused = want->spec.desired_state == api::DesiredState::kPaused;
    switch (state.phase()) {
      case api::VmState::Phase::kStarting:
      case api::VmState::Phase::kRunning: {
        const nanoseconds timeout = want->spec.readiness_timeout;
        if (want_paused && state.is_running()) break;  // pause below
        if (timeout.count() > 0 && rt.boot_started && now - *rt.boot_started >= timeout) {
          rt.pending_failure = "no ready marker within " + Describe(timeout);
          Emit(key, "Warning", "ReadinessTimeout", rt.pending_failure + "; killing the VMM");
          api::Status s = slot.driver->Kill(vmm, DeadlineIn(options_.call_timeout));
          if (!s.ok()) return s;
          return Now();
        }
        nanoseconds wait = observed.observation.recheck_after.value_or(options_.poll_interval);
        if (state.phase() == api::VmState::Phase::kRunning) wait = options_.poll_interval;
        if (timeout.count() > 0 && rt.boot_started) {
          wait = std::min(wait, timeout - (now - *rt.boot_started));
        }
        return After(wait);
      }
      default:
        break;
    }

    if (state.is_running() && rt.boot_wait) {
      const bool disk =
          rt.boot_wait->reason == drivers::ReasonName(drivers::BootRefusal::Reason::kDiskLocked);
      Emit(key, "Normal", disk ? "DiskUnlocked" : "ImageReadable",
           std::string(disk ? "the disk lock was free" : "every image could be opened") +
               " at boot attempt " + std::to_string(rt.boot_wait->attempts + 1));
      rt.boot_wait.reset();
    }
    if (state.is_ready() && !rt.ready_since) rt.ready_since = now;  // for the crash-loop reset
    if (state.is_ready() && !rt.ready_seen) {
      rt.ready_seen = true;
      const Mono ready_at = observed.observation.ready_at.value_or(now);
      if (rt.boot_started) {
        rt.last_boot_seconds = std::max(0.0, Seconds(ready_at - *rt.boot_started));
        if (hooks_.boot_duration) hooks_.boot_duration(rt.driver, *rt.last_boot_seconds);
      }
      rt.record->ready_at = clock_.WallNow();
      if (api::Status s = SaveRecord(key, rt, StateStore::Durability::kAtomic); !s.ok()) return s;
      Emit(key, "Normal", "Ready",
           "the guest reported ready at " + std::string(state.ip().value_or("")) +
               (rt.last_boot_seconds
                    ? " " +
                          Describe(duration_cast<nanoseconds>(
                              std::chrono::duration<double>(*rt.last_boot_seconds))) +
                          " after boot"
                    : ""));
    }
    if (want_paused && state.is_running()) {
      api::Status s = slot.driver->Pause(vmm, DeadlineIn(options_.call_timeout));
      if (!s.ok()) return s;
      Emit(key, "Normal", "Paused", "paused as desiredState asks");
      rt.view = api::VmState::Paused();
      rt.ready_since.reset();  // time paused is not time Ready
      return Now();
    }
    if (!want_paused && state.phase() == api::VmState::Phase::kPaused) {
      api::Status s = slot.driver->Resume(vmm, DeadlineIn(options_.call_timeout));
      if (!s.ok()) return s;
      Emit(key, "Normal", "Resumed", "resumed as desiredState asks");
      return Now();
    }
    // Converged. A VM that has stayed Ready long enough leaves its crash loop.
    if (rt.record->consecutive_failures > 0 && rt.ready_since) {
      const nanoseconds ready_for = now - *rt.ready_since;
      if (ready_for >= options_.crash_loop_reset) {
        rt.record->consecutive_failures = 0;
        rt.next_restart_at.reset();
        if (api::Status s = SaveRecord(key, rt, StateStore::Durability::kAtomic); !s.ok()) {
          return s;
        }
        return Idle();
      }
      return After(options_.crash_loop_reset - ready_for);
    }
    return Idle();
  }

  // No VMM.
  if (!want) return CleanUp(key, rt);
  if (want->spec.desired_state == api::DesiredState::kStopped) {
    // The operator stopped it: whatever ended it before is settled, and a
    // later Running is a fresh start, not a restart.
    rt.next_restart_at.reset();
    rt.boot_wait.reset();
    rt.view = api::VmState::Stopped();
    if (rt.record && (!rt.record->last_exit_phase.empty() || rt.record->consecutive_failures > 0 ||
                      rt.record->restart_not_before)) {
      rt.record->last_exit_phase.clear();
      rt.record->last_exit_reason.clear();
      rt.record->consecutive_failures = 0;
      rt.record->restart_not_before.reset();
      if (api::Status s = SaveRecord(key, rt); !s.ok()) return s;
    }
    return Idle();
  }
  if (rt.record && !rt.record->last_exit_phase.empty()) {
    const bool failed = rt.record->last_exit_phase == "Failed";
    const api::RestartPolicy policy = want->spec.restart_policy;
    const bool restart = policy == api::RestartPolicy::kAlways ||
                         (policy == api::RestartPolicy::kOnFailure && failed);
    if (!restart) {
      rt.next_restart_at.reset();  // no attempt will come
      return Idle();
    }
    // The boot hash changed since the crash: the operator's fix is tried now.
    const bool spec_changed = rt.record->spec_hash != want->spec_hash;
    if (rt.next_restart_at && now < *rt.next_restart_at && !spec_changed) {
      return After(*rt.next_restart_at - now);
    }
  }
  if (rt.boot_wait && now < rt.boot_wait->retry_at && rt.boot_wait->spec_hash == want->spec_hash) {
    return After(rt.boot_wait->retry_at - now);
  }
  return Boot(key, rt, *want, slot);
}

api::StatusOr<ReconcileResult> Reconciler::Boot(const api::VmKey& key, Runtime& rt,
                                                const manifests::DesiredVm& want,
                                                DriverSlot& slot) {
  std::vector<api::FieldError> problems = slot.driver->CheckSpec(want.spec);
  if (!problems.empty()) {
    rt.view = api::VmState::Failed("driver " + want.spec.driver + " cannot run this spec: " +
                                   problems.front().field + ": " + problems.front().reason);
    return Idle();  // the manifest must change first
  }
  if (api::Status s = store_.EnsureVmDir(key); !s.ok()) return s;
  const std::string vm_dir = store_.VmDir(key);
  api::VmSpec spec = want.spec;
  spec.serial_log = vm_dir + "/serial.log";

  VmRecord record = rt.record.value_or(VmRecord{});
  const bool restart = !record.last_exit_phase.empty();
  const std::string restart_reason =
      record.last_exit_reason.empty() ? record.last_exit_phase : record.last_exit_reason;
  // Boot latency runs from the spawn request (DESIGN §6).
  const Mono spawn_requested = clock_.MonotonicNow();
  api::StatusOr<drivers::BootResult> booted =
      slot.driver->Boot(spec, vm_dir, DeadlineIn(options_.boot_call_timeout));
  if (!booted.ok()) {
    Emit(key, "Warning", "BootFailed", booted.status().message());
    return booted.status();
  }
  if (const drivers::BootRefusal* refused = booted->refusal()) {
    return WaitToBoot(key, rt, *refused, want.spec_hash);
  }
  const drivers::VmmHandle* handle = booted->handle();
  record.driver = want.spec.driver;
  record.vmm = *handle;
  record.spec_hash = want.spec_hash;
  record.boot_requested_at = clock_.WallNow();
  record.ready_at.reset();
  record.stop_requested = false;
  record.stop_requested_at.reset();
  record.stop_grace_seconds = want.spec.stop_grace_period.count();
  record.last_exit_phase.clear();
  record.last_exit_reason.clear();
  record.restart_not_before.reset();
  if (restart) ++record.restart_count;
  rt.record = std::move(record);
  rt.driver = want.spec.driver;
  rt.boot_started = spawn_requested;
  rt.ready_since.reset();
  rt.ready_seen = false;
  rt.next_restart_at.reset();
  rt.view = api::VmState::Starting();
  {
    std::lock_guard lock(mu_);
    by_dir_[vm_dir] = key;
  }
  // The VMM exists now: remember it before anything else can go wrong.
  if (api::Status s = SaveRecord(key, rt); !s.ok()) return s;
  if (restart && hooks_.restarted) hooks_.restarted(key, restart_reason);
  Emit(key, "Normal", restart ? "Restarted" : "Booted",
       "VMM started by " + want.spec.driver + ", pid " + std::to_string(handle->process.pid) +
           (restart ? " (after: " + restart_reason + ")" : ""));
  return Now();
}

api::StatusOr<ReconcileResult> Reconciler::Stop(const api::VmKey& key, Runtime& rt,
                                                DriverSlot& slot, const drivers::ConfirmedVmm& vmm,
                                                const api::VmState& state, const std::string& why) {
  const Mono now = clock_.MonotonicNow();
  VmRecord& record = *rt.record;
  if (!record.stop_requested) {
    if (state.phase() == api::VmState::Phase::kPaused) {
      // A paused guest cannot answer the power button.
      api::Status s = slot.driver->Resume(vmm, DeadlineIn(options_.call_timeout));
      if (!s.ok()) return s;
      Emit(key, "Normal", "Resumed", "resumed so that the guest can shut down: " + why);
      return Now();
    }
    api::Status s = slot.driver->Shutdown(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok() && s.IsRetryable()) return s;
    record.stop_requested = true;
    record.stop_requested_at = clock_.WallNow();
    rt.stop_reason = why;
    rt.stop_deadline = now + seconds(record.stop_grace_seconds);
    if (api::Status saved = SaveRecord(key, rt); !saved.ok()) return saved;
    Emit(key, "Normal", "Stopping",
         why + ": ACPI power button pressed; forced stop after " +
             Describe(seconds(record.stop_grace_seconds)));
    return After(std::min<nanoseconds>(seconds(record.stop_grace_seconds), options_.poll_interval));
  }
  if (rt.stop_reason.empty()) rt.stop_reason = why;
  if (!rt.stop_deadline) rt.stop_deadline = now;
  if (now >= *rt.stop_deadline) {
    api::Status s = slot.driver->Kill(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok()) return s;
    Emit(key, "Warning", "Killed",
         "the guest did not power off within " + Describe(seconds(record.stop_grace_seconds)) +
             "; the VMM was stopped by force");
    return Now();
  }
  nanoseconds wait = std::min<nanoseconds>(*rt.stop_deadline - now, options_.poll_interval);
  if (rt.recheck_hint) wait = std::min<nanoseconds>(wait, *rt.recheck_hint);
  return After(wait);
}

api::StatusOr<ReconcileResult> Reconciler::CleanUp(const api::VmKey& key, Runtime& rt) {
  if (api::Status s = store_.RemoveVmDir(key); !s.ok()) return s;
  spdlog::info("namespace={} name={} event=Deleted the VM and its state directory are gone", key.ns,
               key.name);
  rt.forget = true;  // the caller drops the runtime once the pass is over
  if (hooks_.forgotten) hooks_.forgotten(key);
  return Idle();
}

void Reconciler::WriteStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired,
                             const Observed& observed) {
  (void)observed;
  const manifests::DesiredVm* want = desired.vm.get();
  if (!want && !desired.invalid && !store_.VmDirExists(key)) return;
  const WallTime wall = clock_.WallNow();
  const Mono now = clock_.MonotonicNow();

  VmStatus status = rt.status.value_or(VmStatus{});
  const api::VmState& view = rt.view;
  status.phase = std::string(api::PhaseName(view.phase()));
  status.ip = std::string(view.ip().value_or(""));
  status.reason = std::string(view.reason());
  if (rt.record && rt.record->stop_requested && !rt.stop_reason.empty()) {
    status.reason = "Stopping: " + rt.stop_reason;
  }
  status.desired_state = want              ? std::string(api::ToString(want->spec.desired_state))
                         : desired.invalid ? "Unknown"
                                           : "Deleted";
  status.observed_generation = rt.record && rt.record->vmm ? rt.record->spec_hash
                               : want                      ? want->spec_hash
                                                           : "";
  status.restart_count = rt.record ? rt.record->restart_count : 0;
  status.last_boot_duration_seconds = rt.last_boot_seconds;
  status.vmm.reset();
  if (rt.record && rt.record->vmm) {
    status.vmm = VmStatus::Vmm{rt.record->driver, rt.record->vmm->process.pid,
                               rt.record->vmm->process.start_time_ticks};
  }

  auto condition = [&](std::string type, bool value, std::string reason, std::string message) {
    SetCondition(status, Condition{std::move(type), value ? "True" : "False", std::move(reason),
                                   std::move(message), wall});
  };
  const bool waiting = rt.boot_wait && !view.is_running() && want &&
                       want->spec.desired_state != api::DesiredState::kStopped;
  if (waiting) {
    status.reason = rt.boot_wait->reason + ": " + rt.boot_wait->detail + "; boot attempt " +
                    std::to_string(rt.boot_wait->attempts) + " refused";
  }
  condition("Ready", view.is_ready(),
            view.is_ready() ? "GuestReady"
            : waiting       ? rt.boot_wait->reason
                            : status.phase,
            view.is_ready() ? "the guest reported ready at " + status.ip
            : waiting       ? status.reason
                            : "");
  condition("Paused", view.phase() == api::VmState::Phase::kPaused,
            view.phase() == api::VmState::Phase::kPaused ? "Paused" : "NotPaused", "");
  if (desired.invalid) {
    condition("ManifestValid", false, "ManifestInvalid",
              desired.invalid->ToString() +
                  (want ? " (the VM keeps its last valid spec)" : " (no valid spec yet)"));
  } else {
    condition("ManifestValid", true, "Valid", "");
  }
  const bool backing_off = rt.next_restart_at && now < *rt.next_restart_at &&
                           view.phase() != api::VmState::Phase::kStarting &&
                           !(rt.record && rt.record->vmm);
  if (backing_off) {
    const nanoseconds left = *rt.next_restart_at - now;
    condition("CrashLoopBackOff", true, "BackOff",
              "restart " + std::to_string(rt.record ? rt.record->consecutive_failures : 0) +
                  " waits " + Describe(left) + "; next attempt at " +
                  FormatTime(wall + duration_cast<WallTime::duration>(left)));
  } else {
    condition("CrashLoopBackOff", false, "NoBackOff", "");
  }
  bool converged = false;
  if (want) {
    const bool same_spec = !rt.record || !rt.record->vmm || rt.record->spec_hash == want->spec_hash;
    switch (want->spec.desired_state) {
      case api::DesiredState::kRunning:
        converged = view.is_running() && same_spec;
        break;
      case api::DesiredState::kPaused:
        converged = view.phase() == api::VmState::Phase::kPaused && same_spec;
        break;
      case api::DesiredState::kStopped:
        converged = !(rt.record && rt.record->vmm);
        break;
    }
  }
  condition("Converged", converged, converged ? "Converged" : "Progressing", "");

  if (hooks_.status) {
    const std::string& driver = rt.record && rt.record->vmm ? rt.record->driver
                                : want                      ? want->spec.driver
                                                            : rt.driver;
    hooks_.status(key, driver, status.phase, status.desired_state);
  }
  if (status.phase != rt.phase) {
    if (hooks_.phase_changed && !rt.phase.empty()) {
      hooks_.phase_changed(key, rt.driver, rt.phase, status.phase, Seconds(now - rt.phase_since));
    }
    rt.phase = status.phase;
    rt.phase_since = now;
  }
  if (rt.status && *rt.status == status) return;
  if (want || desired.invalid) {
    if (api::Status s = store_.EnsureVmDir(key); !s.ok()) return;
  }
  api::Status s = store_.SaveStatus(key, status);
  if (!s.ok()) {
    spdlog::warn("namespace={} name={} cannot save status.json: {}", key.ns, key.name, s.message());
    return;
  }
  std::lock_guard lock(mu_);
  rt.status = std::move(status);
}

}  // namespace vmlet::controller
