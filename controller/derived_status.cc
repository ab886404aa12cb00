#include "controller/derived_status.h"

#include <utility>

namespace vmlet::controller {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using Mono = api::Clock::MonotonicTime;

// While a refused boot waits (drivers/boot_refusal.h): its reason in
// `status` and its Ready condition. False (and nothing set) otherwise.
bool ShowBootWait(VmStatus& status, const VmRuntime& rt, const manifests::DesiredVm* want,
                  WallTime wall) {
  const bool waiting = rt.boot_wait && !rt.view.is_running() && want &&
                       want->spec.desired_state != api::DesiredState::kStopped;
  if (!waiting) return false;
  status.reason = rt.boot_wait->reason + ": " + rt.boot_wait->detail + "; boot attempt " +
                  std::to_string(rt.boot_wait->attempts) + " refused";
  SetCondition(status, Condition{"Ready", "False", rt.boot_wait->reason, status.reason, wall});
  return true;
}

// After a boot error no retry can help, while the manifest is the one that
// failed: why, in `status` and its Ready condition. False (and nothing set)
// otherwise.
bool ShowBootFailure(VmStatus& status, const VmRuntime& rt, const manifests::DesiredVm* want,
                     WallTime wall) {
  if (!rt.boot_failure || !want || !(rt.boot_failure->refused == *want)) return false;
  if (rt.record && rt.record->vmm) return false;
  status.reason =
      "BootFailed: " + rt.boot_failure->message + " (not retried until the manifest changes)";
  SetCondition(status, Condition{"Ready", "False", "BootFailed", status.reason, wall});
  return true;
}

VmStatus StatusFields(const VmRuntime& rt, const DesiredEntry& desired) {
  const manifests::DesiredVm* want = desired.vm.get();
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
  return status;
}

bool Converged(const VmRuntime& rt, const manifests::DesiredVm* want) {
  if (!want) return false;
  const bool has_vmm = rt.record && rt.record->vmm;
  const bool same_spec = !has_vmm || rt.record->spec_hash == want->spec_hash;
  switch (want->spec.desired_state) {
    case api::DesiredState::kRunning:
      return rt.view.is_running() && same_spec;
    case api::DesiredState::kPaused:
      return rt.view.phase() == api::VmState::Phase::kPaused && same_spec;
    case api::DesiredState::kStopped:
      return !has_vmm;
  }
  return false;
}

void SetConditions(VmStatus& status, const VmRuntime& rt, const DesiredEntry& desired,
                   WallTime wall, Mono now) {
  const manifests::DesiredVm* want = desired.vm.get();
  const api::VmState& view = rt.view;
  auto condition = [&](std::string type, bool value, std::string reason, std::string message) {
    SetCondition(status, Condition{std::move(type), value ? "True" : "False", std::move(reason),
                                   std::move(message), wall});
  };
  if (!ShowBootWait(status, rt, want, wall) && !ShowBootFailure(status, rt, want, wall)) {
    condition("Ready", view.is_ready(), view.is_ready() ? "GuestReady" : status.phase,
              view.is_ready() ? "the guest reported ready at " + status.ip : "");
  }
  const bool paused = view.phase() == api::VmState::Phase::kPaused;
  condition("Paused", paused, paused ? "Paused" : "NotPaused", "");
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
                  " waits " + DescribeDelay(left) + "; next attempt at " +
                  FormatTime(wall + duration_cast<WallTime::duration>(left)));
  } else {
    condition("CrashLoopBackOff", false, "NoBackOff", "");
  }
  const bool converged = Converged(rt, want);
  condition("Converged", converged, converged ? "Converged" : "Progressing", "");
}

}  // namespace

VmStatus DeriveStatus(const VmRuntime& rt, const DesiredEntry& desired, WallTime wall, Mono now) {
  VmStatus status = StatusFields(rt, desired);
  SetConditions(status, rt, desired, wall, now);
  return status;
}

std::string DescribeDelay(nanoseconds d) {
  const auto ms = duration_cast<milliseconds>(d).count();
  if (ms < 1000) return std::to_string(ms) + "ms";
  const auto s = (ms + 500) / 1000;
  if (s < 120) return std::to_string(s) + "s";
  return std::to_string(s / 60) + "m" + (s % 60 ? std::to_string(s % 60) + "s" : "");
}

}  // namespace vmlet::controller
