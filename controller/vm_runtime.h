#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "api/clock.h"
#include "api/vm_state.h"
#include "controller/state_store.h"
#include "manifests/directory_source.h"

namespace vmlet::controller {

// A refused boot under way (VmRuntime::boot_wait). At namespace scope, not
// nested: clang cannot default-construct a nested struct with member
// initializers inside std::optional while the enclosing struct is incomplete.
struct RefusedBootWait {
  std::string reason;                    // DiskLocked, ImageNotReadable
  std::string detail;                    // the driver's words
  int attempts = 0;                      // boots refused so far
  api::Clock::MonotonicTime retry_at{};  // the next boot, not before
  std::string spec_hash;                 // the spec that was refused: a new one is tried at once
};

// What the reconciler keeps in memory about one VM between passes. Only the
// worker that holds the key touches it.
struct VmRuntime {
  bool loaded = false;
  std::optional<VmRecord> record;
  bool record_dirty = false;       // the last record write failed: write before anything else
  std::optional<VmStatus> status;  // as last written
  bool dir_exists = false;         // the VM directory, as of this pass
  api::VmState view = api::VmState::Stopped();  // the phase to report
  std::string driver;
  std::optional<api::Clock::MonotonicTime> boot_started;
  std::optional<api::Clock::MonotonicTime> ready_since;
  std::optional<api::Clock::MonotonicTime> stop_deadline;
  std::optional<api::Clock::MonotonicTime> next_restart_at;
  std::optional<double> last_boot_seconds;
  std::string pending_failure;  // why vmlet is killing the VMM as a failure (readiness timeout)
  std::string stop_reason;      // why vmlet is stopping it
  std::optional<api::VmState::Phase> reported_phase;  // the last phase reported to hooks
  bool ready_seen = false;  // this boot's Ready was recorded (event, boot duration)
  bool forget = false;      // cleaned up: drop this runtime when the pass ends
  std::optional<std::chrono::milliseconds>
      recheck_hint;  // the driver's, from this pass's observation
  api::Clock::MonotonicTime phase_since{};
  // The boot was refused for a reason another boot gets past once it is
  // cleared (drivers/boot_refusal.h): a disk image another process
  // holds locked (a move from another host under way), an image the VMM's
  // user cannot open. Kept until the VMM runs, or the VM is no longer meant
  // to.
  using BootWait = RefusedBootWait;
  std::optional<BootWait> boot_wait;
  // The last boot failed with an error no retry can help (the driver's
  // InvalidArgument or FailedPrecondition: a spec it cannot honour). No boot
  // is tried again, not even on a resync, until the manifest changes.
  struct BootFailure {
    manifests::DesiredVm refused;  // the manifest as it was then
    std::string message;           // the driver's words
  };
  std::optional<BootFailure> boot_failure;

  // After a vmlet restart: the driver, the phase of the last exit, and the
  // monotonic times (boot, ready, crash-loop backoff, stop deadline) from
  // the record's wall times, so timeouts, grace periods and the crash-loop
  // reset go on where they were. REQUIRES: record.
  void RestoreFromRecord(const api::Clock& clock);

  // What this pass changed, written by Commit() at its end.
  std::optional<StateStore::Durability> record_write;  // record.json: how durably
  std::vector<Event> new_events;
  std::optional<VmStatus> new_status;
  bool status_needs_dir = false;  // create the VM directory for the status
};

}  // namespace vmlet::controller
