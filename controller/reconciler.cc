#include "controller/reconciler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>

#include "controller/derived_status.h"
#include "controller/rate_limiter.h"
#include "drivers/boot_refusal.h"

namespace vmlet::controller {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

double Seconds(nanoseconds d) { return std::chrono::duration<double>(d).count(); }

// A refused boot (DiskLocked, ImageNotReadable) is tried again after 1 s,
// 2 s, 4 s ... 30 s at most: a disk's holder is usually a VM stopping
// gracefully on another host, which takes its grace period at most.
nanoseconds BootRefusedDelay(int attempts, double jitter) {
  const double base = std::min(30.0, std::ldexp(1.0, std::clamp(attempts - 1, 0, 5)));
  return duration_cast<nanoseconds>(std::chrono::duration<double>(base * jitter));
}

// The driver says no retry of the same call can help (drivers/vm_driver.h):
// a spec it cannot honour.
bool NoRetryCanHelp(const api::Status& status) {
  return status.code() == api::Status::Code::kInvalidArgument ||
         status.code() == api::Status::Code::kFailedPrecondition;
}

ReconcileResult After(nanoseconds d) { return ReconcileResult{std::max(d, nanoseconds(0))}; }
ReconcileResult Now() { return ReconcileResult{nanoseconds(0)}; }
ReconcileResult Idle() { return ReconcileResult{std::nullopt}; }

}  // namespace

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

// ---------------------------------------------------------------------------
// One pass.

api::StatusOr<ReconcileResult> Reconciler::Reconcile(const api::VmKey& key) {
  // Until the manifest directory has been read once, a VM missing from the
  // desired state may only be unread, not deleted: touch nothing. (The
  // manager enqueues every VM again after the first full scan.)
  if (!desired_.synced()) return Idle();
  Runtime& rt = RuntimeFor(key);
  const DesiredEntry desired = desired_.Get(key);
  api::StatusOr<ReconcileResult> result = Pass(key, rt, desired);
  if (rt.forget) {
    Drop(key);
    return result;
  }
  api::Status saved = Commit(key, rt);
  if (result.ok() && !saved.ok()) return saved;
  return result;
}

api::StatusOr<ReconcileResult> Reconciler::Pass(const api::VmKey& key, Runtime& rt,
                                                const DesiredEntry& desired) {
  if (api::Status s = Load(key, rt); !s.ok()) return s;
  if (rt.record_dirty) {
    StageRecord(rt);
    if (api::Status s = Commit(key, rt); !s.ok()) return s;
  }
  if (!desired.vm && !rt.record) return Unowned(key, rt, desired);

  // A running VMM belongs to the driver that launched it; a new boot to the
  // driver the manifest names now.
  const bool has_vmm = rt.record && rt.record->vmm;
  const std::string driver_name =
      has_vmm || !desired.vm ? rt.record->driver : desired.vm->spec.driver;
  auto slot = drivers_.find(driver_name);
  if (slot == drivers_.end() && !has_vmm && !desired.vm) return CleanUp(key, rt);
  if (slot == drivers_.end()) {
    rt.view = api::VmState::Failed("driver \"" + driver_name + "\" is not available in this vmlet");
    if (desired.vm) WriteStatus(key, rt, desired);
    spdlog::error("namespace={} name={} driver {} is not available", key.ns, key.name, driver_name);
    return Idle();  // nothing to retry until the manifest or vmlet changes
  }
  rt.driver = driver_name;

  Observed observed;
  if (has_vmm) {
    if (EarlyEnd end = ObserveVmm(key, rt, desired, slot->second, observed)) return *end;
  }
  api::StatusOr<ReconcileResult> result = Step(key, rt, desired, slot->second, observed);
  if (!rt.forget) WriteStatus(key, rt, desired);
  return result;
}

api::Status Reconciler::Load(const api::VmKey& key, Runtime& rt) {
  api::StatusOr<StateStore::StoredVm> stored =
      store_.LoadVm(key, rt.loaded ? StateStore::Read::kDirectory : StateStore::Read::kFiles);
  if (!stored.ok()) return stored.status();
  rt.dir_exists = stored->dir_exists;
  if (rt.loaded) return api::Status::Ok();
  return TakeStored(key, rt, std::move(stored).value());
}

api::Status Reconciler::TakeStored(const api::VmKey& key, Runtime& rt,
                                   StateStore::StoredVm stored) {
  rt.record = std::move(stored.record.record);
  {
    std::lock_guard lock(mu_);
    rt.status = std::move(stored.status);
  }
  rt.loaded = true;
  if (stored.record.quarantined_to) {
    Emit(key, rt, EventType::kWarning, "RecordQuarantined",
         "record.json was corrupt (" + stored.record.problem + "); moved to " +
             *stored.record.quarantined_to + "; the VM is re-derived from the host");
  }
  if (rt.status && rt.status->last_boot_duration_seconds) {
    rt.last_boot_seconds = rt.status->last_boot_duration_seconds;
  }
  if (!rt.record && rt.dir_exists) {
    // A VM directory without a usable record: a VMM may still run there
    // (the record was corrupt, or vmlet died between launching the VMM and
    // recording it). Adopt it rather than boot a second one.
    if (api::Status s = Rediscover(key, rt); !s.ok()) {
      rt.loaded = false;
      return s;
    }
  }
  if (!rt.record) return api::Status::Ok();
  rt.RestoreFromRecord(clock_);
  if (rt.record->vmm) {
    std::lock_guard lock(mu_);
    by_dir_[rt.record->vmm->vm_dir] = key;
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
    // The VMM is vmlet's now: its record is on disk before anything else.
    StageRecord(rt);
    if (api::Status s = Commit(key, rt); !s.ok()) return s;
    Emit(key, rt, EventType::kWarning, "Adopted",
         "found " + name + " VMM pid " + std::to_string(found->value().process.pid) +
             " running without a record; adopted it");
    return api::Status::Ok();
  }
  return api::Status::Ok();
}

api::StatusOr<ReconcileResult> Reconciler::Unowned(const api::VmKey& key, Runtime& rt,
                                                   const DesiredEntry& desired) {
  if (desired.invalid) {
    // Never valid, so nothing runs; the status says why.
    rt.view = api::VmState::Failed("the manifest is invalid and there is no earlier valid spec");
    WriteStatus(key, rt, desired);
    return Idle();
  }
  if (rt.dir_exists) return CleanUp(key, rt);
  rt.forget = true;  // nothing of it here: nothing to remember
  return Idle();
}

Reconciler::EarlyEnd Reconciler::ObserveVmm(const api::VmKey& key, Runtime& rt,
                                            const DesiredEntry& desired, DriverSlot& slot,
                                            Observed& observed) {
  drivers::VmmIdentity::Check check = slot.identity->Confirm(key, *rt.record->vmm);
  if (check.verdict == drivers::VmmIdentity::Verdict::kUnknown) {
    return api::Status::Unavailable("cannot verify the VMM's identity: " + check.reason);
  }
  if (check.verdict != drivers::VmmIdentity::Verdict::kConfirmed) {
    api::StatusOr<ReconcileResult> result = VmmGone(key, rt, slot, check);
    WriteStatus(key, rt, desired);
    return result;
  }
  api::StatusOr<drivers::Observation> o =
      slot.driver->Observe(*check.vmm, DeadlineIn(options_.call_timeout));
  if (!o.ok()) {
    if (o.status().IsNotFound()) return Now();  // exited between the check and the look
    return o.status();
  }
  observed.alive = true;
  observed.observation = *o;
  observed.vmm = std::move(check.vmm);
  rt.view = o->state;
  rt.recheck_hint = o->recheck_after;
  return std::nullopt;
}

api::Status Reconciler::Commit(const api::VmKey& key, Runtime& rt) {
  StateStore::VmChanges changes;
  if (rt.record_write && rt.record) {
    changes.record = *rt.record;
    changes.record_durability = *rt.record_write;
  }
  changes.events = std::exchange(rt.new_events, {});
  changes.status = std::exchange(rt.new_status, std::nullopt);
  changes.ensure_dir = changes.status && rt.status_needs_dir;
  rt.record_write.reset();
  rt.status_needs_dir = false;
  if (changes.empty()) return api::Status::Ok();

  const StateStore::CommitResult done = store_.Commit(key, changes);
  if (changes.ensure_dir && done.dir.ok()) rt.dir_exists = true;
  if (changes.record) {
    rt.record_dirty = !done.record.ok();
    if (!done.record.ok()) {
      spdlog::error("namespace={} name={} cannot save record.json: {}", key.ns, key.name,
                    done.record.message());
    }
  }
  if (!done.events.ok()) {
    spdlog::warn("namespace={} name={} cannot record event: {}", key.ns, key.name,
                 done.events.message());
  }
  if (changes.status && done.status.ok()) {
    std::lock_guard lock(mu_);
    rt.status = std::move(changes.status);
  } else if (changes.status && done.dir.ok()) {
    spdlog::warn("namespace={} name={} cannot save status.json: {}", key.ns, key.name,
                 done.status.message());
  }
  return done.record;
}

// ---------------------------------------------------------------------------
// The step.

api::StatusOr<ReconcileResult> Reconciler::Step(const api::VmKey& key, Runtime& rt,
                                                const DesiredEntry& desired, DriverSlot& slot,
                                                const Observed& observed) {
  const manifests::DesiredVm* want = desired.vm.get();
  if (!want && desired.invalid) {
    // The manifest is there but has never been valid since vmlet started
    // (it broke while vmlet was down): that is not a deletion. Hands off
    // until it is fixed or removed; the status says why.
    return Idle();
  }
  if (observed.alive) return StepWithVmm(key, rt, want, slot, observed);
  return StepWithoutVmm(key, rt, want, slot);
}

namespace {

// Why a running VMM must stop, if it must.
std::optional<std::string> WhyStop(const VmRecord& record, const std::string& stop_reason,
                                   const manifests::DesiredVm* want) {
  if (!want) return "the VM was deleted";
  if (want->spec.desired_state == api::DesiredState::kStopped) return "desiredState is Stopped";
  if (record.spec_hash != want->spec_hash) return "the spec changed; the VM is recreated";
  if (record.stop_requested) return stop_reason;
  return std::nullopt;
}

}  // namespace

api::StatusOr<ReconcileResult> Reconciler::StepWithVmm(const api::VmKey& key, Runtime& rt,
                                                       const manifests::DesiredVm* want,
                                                       DriverSlot& slot, const Observed& observed) {
  const drivers::ConfirmedVmm& vmm = *observed.vmm;
  const api::VmState& state = observed.observation.state;
  if (std::optional<std::string> why = WhyStop(*rt.record, rt.stop_reason, want)) {
    return Stop(key, rt, slot, vmm, state, *why);
  }
  // The grace period is not part of the boot hash: the next stop uses the
  // manifest's current one.
  if (rt.record->stop_grace_seconds != want->spec.stop_grace_period.count()) {
    rt.record->stop_grace_seconds = want->spec.stop_grace_period.count();
    StageRecord(rt, StateStore::Durability::kAtomic);
  }

  const bool want_paused = want->spec.desired_state == api::DesiredState::kPaused;
  const api::VmState::Phase phase = state.phase();
  if (phase == api::VmState::Phase::kStarting ||
      (phase == api::VmState::Phase::kRunning && !want_paused)) {
    return AwaitReady(key, rt, *want, slot, observed);
  }
  if (state.is_running()) NoteBootAccepted(key, rt);
  if (state.is_ready()) NoteReady(key, rt, observed);
  if (want_paused && state.is_running()) {
    api::Status s = slot.driver->Pause(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok()) return s;
    Emit(key, rt, EventType::kNormal, "Paused", "paused as desiredState asks");
    rt.view = api::VmState::Paused();
    rt.ready_since.reset();  // time paused is not time Ready
    return Now();
  }
  if (!want_paused && phase == api::VmState::Phase::kPaused) {
    api::Status s = slot.driver->Resume(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok()) return s;
    Emit(key, rt, EventType::kNormal, "Resumed", "resumed as desiredState asks");
    return Now();
  }
  return LeaveCrashLoop(rt);
}

api::StatusOr<ReconcileResult> Reconciler::AwaitReady(const api::VmKey& key, Runtime& rt,
                                                      const manifests::DesiredVm& want,
                                                      DriverSlot& slot, const Observed& observed) {
  const Mono now = clock_.MonotonicNow();
  const nanoseconds timeout = want.spec.readiness_timeout;
  if (timeout.count() > 0 && rt.boot_started && now - *rt.boot_started >= timeout) {
    rt.pending_failure = "no ready marker within " + DescribeDelay(timeout);
    Emit(key, rt, EventType::kWarning, "ReadinessTimeout",
         rt.pending_failure + "; killing the VMM");
    api::Status s = slot.driver->Kill(*observed.vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok()) return s;
    return Now();
  }
  nanoseconds wait = observed.observation.recheck_after.value_or(options_.poll_interval);
  if (observed.observation.state.phase() == api::VmState::Phase::kRunning) {
    wait = options_.poll_interval;
  }
  if (timeout.count() > 0 && rt.boot_started) {
    wait = std::min(wait, timeout - (now - *rt.boot_started));
  }
  return After(wait);
}

void Reconciler::NoteReady(const api::VmKey& key, Runtime& rt, const Observed& observed) {
  const Mono now = clock_.MonotonicNow();
  if (!rt.ready_since) rt.ready_since = now;  // for the crash-loop reset
  if (rt.ready_seen) return;
  rt.ready_seen = true;
  const Mono ready_at = observed.observation.ready_at.value_or(now);
  if (rt.boot_started) {
    rt.last_boot_seconds = std::max(0.0, Seconds(ready_at - *rt.boot_started));
    if (hooks_.boot_duration) hooks_.boot_duration(rt.driver, *rt.last_boot_seconds);
  }
  rt.record->ready_at = clock_.WallNow();
  StageRecord(rt, StateStore::Durability::kAtomic);
  const std::optional<std::string_view> ip = observed.observation.state.ip();
  Emit(key, rt, EventType::kNormal, "Ready",
       "the guest reported ready at " + std::string(ip.value_or("")) +
           (rt.last_boot_seconds ? " " +
                                       DescribeDelay(duration_cast<nanoseconds>(
                                           std::chrono::duration<double>(*rt.last_boot_seconds))) +
                                       " after boot"
                                 : ""));
}

ReconcileResult Reconciler::LeaveCrashLoop(Runtime& rt) {
  if (rt.record->consecutive_failures == 0 || !rt.ready_since) return Idle();
  const nanoseconds ready_for = clock_.MonotonicNow() - *rt.ready_since;
  if (ready_for < options_.crash_loop_reset) return After(options_.crash_loop_reset - ready_for);
  rt.record->consecutive_failures = 0;
  rt.next_restart_at.reset();
  StageRecord(rt, StateStore::Durability::kAtomic);
  return Idle();
}

api::StatusOr<ReconcileResult> Reconciler::StepWithoutVmm(const api::VmKey& key, Runtime& rt,
                                                          const manifests::DesiredVm* want,
                                                          DriverSlot& slot) {
  if (!want) return CleanUp(key, rt);
  if (want->spec.desired_state == api::DesiredState::kStopped) {
    SettleStopped(rt);
    return Idle();
  }
  if (rt.boot_failure && rt.boot_failure->refused == *want) {
    rt.view = api::VmState::Failed(rt.boot_failure->message);
    return Idle();  // the same manifest would fail the same way
  }
  rt.boot_failure.reset();
  if (std::optional<ReconcileResult> wait = RestartWait(rt, *want)) return *wait;
  if (std::optional<ReconcileResult> wait = RefusedBootWait(rt, *want)) return *wait;
  return Boot(key, rt, *want, slot);
}

void Reconciler::SettleStopped(Runtime& rt) {
  // The operator stopped it: whatever ended it before is settled, and a
  // later Running is a fresh start, not a restart.
  rt.next_restart_at.reset();
  rt.boot_wait.reset();
  rt.view = api::VmState::Stopped();
  if (rt.record && (rt.record->last_exit_phase || rt.record->consecutive_failures > 0 ||
                    rt.record->restart_not_before)) {
    rt.record->last_exit_phase.reset();
    rt.record->last_exit_reason.clear();
    rt.record->consecutive_failures = 0;
    rt.record->restart_not_before.reset();
    StageRecord(rt);
  }
}

std::optional<ReconcileResult> Reconciler::RestartWait(Runtime& rt,
                                                       const manifests::DesiredVm& want) {
  if (!rt.record || !rt.record->last_exit_phase) return std::nullopt;
  const bool failed = *rt.record->last_exit_phase == api::VmState::Phase::kFailed;
  const api::RestartPolicy policy = want.spec.restart_policy;
  const bool restart =
      policy == api::RestartPolicy::kAlways || (policy == api::RestartPolicy::kOnFailure && failed);
  if (!restart) {
    rt.next_restart_at.reset();  // no attempt will come
    return Idle();
  }
  // The boot hash changed since the crash: the operator's fix is tried now.
  const bool spec_changed = rt.record->spec_hash != want.spec_hash;
  const Mono now = clock_.MonotonicNow();
  if (rt.next_restart_at && now < *rt.next_restart_at && !spec_changed) {
    return After(*rt.next_restart_at - now);
  }
  return std::nullopt;
}

api::StatusOr<ReconcileResult> Reconciler::VmmGone(const api::VmKey& key, Runtime& rt,
                                                   DriverSlot& slot,
                                                   const drivers::VmmIdentity::Check& check) {
  const drivers::VmmHandle handle = *rt.record->vmm;
  const bool mismatch = check.verdict == drivers::VmmIdentity::Verdict::kMismatch;
  if (mismatch) {
    if (hooks_.identity_mismatch) hooks_.identity_mismatch(rt.record->driver);
    Emit(key, rt, EventType::kWarning, "IdentityMismatch",
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
    record.last_exit_phase.reset();
    record.last_exit_reason.clear();
    Emit(key, rt, EventType::kNormal, "Stopped",
         "the VMM exited as asked (" + rt.stop_reason + ")");
  } else if (!refused) {
    // A refused boot is not a crash: the VMM could not open a disk or image
    // and never ran a guest. No restart is counted, restartPolicy does not
    // apply.
    RecordExit(key, rt, exit);
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
  StageRecord(rt);
  return next;
}

void Reconciler::RecordExit(const api::VmKey& key, Runtime& rt, const api::VmState& exit) {
  VmRecord& record = *rt.record;
  record.last_exit_phase = exit.phase();
  record.last_exit_reason = std::string(exit.reason());
  ++record.consecutive_failures;
  const nanoseconds delay = CrashLoopDelay(record.consecutive_failures, jitter_ ? jitter_() : 1.0);
  rt.next_restart_at = clock_.MonotonicNow() + delay;
  record.restart_not_before = clock_.WallNow() + duration_cast<WallTime::duration>(delay);
  if (exit.phase() == api::VmState::Phase::kFailed) {
    Emit(key, rt, EventType::kWarning, "Crashed", std::string(exit.reason()));
  } else {
    Emit(key, rt, EventType::kNormal, "PoweredOff", "the guest powered off");
  }
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
  rt.dir_exists = true;
  const std::string vm_dir = store_.VmDir(key);
  api::VmSpec spec = want.spec;
  spec.serial_log = vm_dir + "/serial.log";

  VmRecord record = rt.record.value_or(VmRecord{});
  const bool restart = record.last_exit_phase.has_value();
  const std::string restart_reason = record.last_exit_reason.empty() && record.last_exit_phase
                                         ? std::string(api::PhaseName(*record.last_exit_phase))
                                         : record.last_exit_reason;
  // Boot latency runs from the spawn request (docs/reconcile.md).
  const Mono spawn_requested = clock_.MonotonicNow();
  api::StatusOr<drivers::BootResult> booted =
      slot.driver->Boot(spec, vm_dir, DeadlineIn(options_.boot_call_timeout));
  if (!booted.ok()) {
    Emit(key, rt, EventType::kWarning, "BootFailed", booted.status().message());
    if (NoRetryCanHelp(booted.status())) {
      rt.boot_failure = VmRuntime::BootFailure{want, booted.status().message()};
      rt.view = api::VmState::Failed(booted.status().message());
      return Idle();  // the manifest must change first
    }
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
  record.last_exit_phase.reset();
  record.last_exit_reason.clear();
  record.restart_not_before.reset();
  if (restart) ++record.restart_count;
  rt.record = std::move(record);
  rt.boot_failure.reset();
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
  // The VMM exists now: its record is the first thing the pass writes, durably.
  StageRecord(rt);
  if (restart && hooks_.restarted) hooks_.restarted(key, restart_reason);
  Emit(key, rt, EventType::kNormal, restart ? "Restarted" : "Booted",
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
      Emit(key, rt, EventType::kNormal, "Resumed",
           "resumed so that the guest can shut down: " + why);
      return Now();
    }
    api::Status s = slot.driver->Shutdown(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok() && s.IsRetryable()) return s;
    record.stop_requested = true;
    record.stop_requested_at = clock_.WallNow();
    rt.stop_reason = why;
    rt.stop_deadline = now + seconds(record.stop_grace_seconds);
    StageRecord(rt);
    Emit(key, rt, EventType::kNormal, "Stopping",
         why + ": ACPI power button pressed; forced stop after " +
             DescribeDelay(seconds(record.stop_grace_seconds)));
    return After(std::min<nanoseconds>(seconds(record.stop_grace_seconds), options_.poll_interval));
  }
  if (rt.stop_reason.empty()) rt.stop_reason = why;
  if (!rt.stop_deadline) rt.stop_deadline = now;
  if (now >= *rt.stop_deadline) {
    api::Status s = slot.driver->Kill(vmm, DeadlineIn(options_.call_timeout));
    if (!s.ok()) return s;
    Emit(key, rt, EventType::kWarning, "Killed",
         "the guest did not power off within " + DescribeDelay(seconds(record.stop_grace_seconds)) +
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
  rt.dir_exists = false;
  rt.forget = true;  // the caller drops the runtime once the pass is over
  if (hooks_.forgotten) hooks_.forgotten(key);
  return Idle();
}

// ---------------------------------------------------------------------------
// Refused boots.

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
  const std::string message = refusal.detail + "; boot attempt " + std::to_string(wait.attempts) +
                              " refused, next in " + DescribeDelay(delay) +
                              (refusal.reason == drivers::BootRefusal::Reason::kDiskLocked
                                   ? " (on shared storage: the VM still runs elsewhere)"
                                   : "");
  if (news) {
    Emit(key, rt, EventType::kWarning, reason, message);
  } else {
    spdlog::info("namespace={} name={} {}: {}", key.ns, key.name, reason, message);
  }
  return After(delay);
}

std::optional<ReconcileResult> Reconciler::RefusedBootWait(const Runtime& rt,
                                                           const manifests::DesiredVm& want) const {
  const Mono now = clock_.MonotonicNow();
  if (rt.boot_wait && now < rt.boot_wait->retry_at && rt.boot_wait->spec_hash == want.spec_hash) {
    return After(rt.boot_wait->retry_at - now);
  }
  return std::nullopt;
}

void Reconciler::NoteBootAccepted(const api::VmKey& key, Runtime& rt) {
  if (!rt.boot_wait) return;
  const bool disk =
      rt.boot_wait->reason == drivers::ReasonName(drivers::BootRefusal::Reason::kDiskLocked);
  Emit(key, rt, EventType::kNormal, disk ? "DiskUnlocked" : "ImageReadable",
       std::string(disk ? "the disk lock was free" : "every image could be opened") +
           " at boot attempt " + std::to_string(rt.boot_wait->attempts + 1));
  rt.boot_wait.reset();
}

// ---------------------------------------------------------------------------
// status.json and events.

void Reconciler::WriteStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired) {
  if (!desired.vm && !desired.invalid && !rt.dir_exists) return;
  VmStatus status = DeriveStatus(rt, desired, clock_.WallNow(), clock_.MonotonicNow());
  ReportStatus(key, rt, desired, status);
  if (rt.status && *rt.status == status) return;
  rt.new_status = std::move(status);
  rt.status_needs_dir = desired.vm || desired.invalid;
}

void Reconciler::ReportStatus(const api::VmKey& key, Runtime& rt, const DesiredEntry& desired,
                              const VmStatus& status) {
  const manifests::DesiredVm* want = desired.vm.get();
  if (hooks_.status) {
    const std::string& driver = rt.record && rt.record->vmm ? rt.record->driver
                                : want                      ? want->spec.driver
                                                            : rt.driver;
    hooks_.status(key, driver, status.phase, status.desired_state);
  }
  const api::VmState::Phase phase = rt.view.phase();
  if (rt.reported_phase == phase) return;
  const Mono now = clock_.MonotonicNow();
  if (hooks_.phase_changed && rt.reported_phase) {
    hooks_.phase_changed(key, rt.driver, std::string(api::PhaseName(*rt.reported_phase)),
                         status.phase, Seconds(now - rt.phase_since));
  }
  rt.reported_phase = phase;
  rt.phase_since = now;
}

void Reconciler::StageRecord(Runtime& rt, StateStore::Durability durability) {
  if (!rt.record_write || durability == StateStore::Durability::kDurable) {
    rt.record_write = durability;
  }
}

void Reconciler::Emit(const api::VmKey& key, Runtime& rt, EventType type, const std::string& reason,
                      const std::string& message) {
  Event event{clock_.WallNow(), std::string(EventTypeName(type)), reason, message};
  if (type == EventType::kWarning) {
    spdlog::warn("namespace={} name={} event={} {}", key.ns, key.name, reason, message);
  } else {
    spdlog::info("namespace={} name={} event={} {}", key.ns, key.name, reason, message);
  }
  if (hooks_.event) hooks_.event(key, event);
  rt.new_events.push_back(std::move(event));
}

}  // namespace vmlet::controller
