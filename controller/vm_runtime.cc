#include "controller/vm_runtime.h"

#include <chrono>

namespace vmlet::controller {

void VmRuntime::RestoreFromRecord(const api::Clock& clock) {
  const VmRecord& saved = *record;
  driver = saved.driver;
  // Monotonic times do not survive a restart: rebuild them from the record's
  // wall times, so timeouts, grace periods and the crash-loop reset go on
  // where they were.
  const api::Clock::MonotonicTime mono_now = clock.MonotonicNow();
  const WallTime wall_now = clock.WallNow();
  auto since = [&](WallTime then) { return mono_now - (wall_now - then); };
  if (saved.vmm && saved.boot_requested_at) boot_started = since(*saved.boot_requested_at);
  if (saved.vmm && saved.ready_at) {
    ready_since = since(*saved.ready_at);
    ready_seen = true;
  }
  if (!saved.vmm && saved.restart_not_before) {
    next_restart_at = since(*saved.restart_not_before);
  }
  if (saved.stop_requested && saved.stop_requested_at) {
    stop_deadline =
        since(*saved.stop_requested_at) + std::chrono::seconds(saved.stop_grace_seconds);
  }
  if (saved.last_exit_phase) {
    view = *saved.last_exit_phase == api::VmState::Phase::kFailed
               ? api::VmState::Failed(saved.last_exit_reason)
               : api::VmState::Stopped();
  }
}

}  // namespace vmlet::controller
