#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "api/vm_state.h"
#include "controller/rfc3339_time.h"
#include "drivers/vmm_handle.h"

namespace vmlet::controller {

// record.json: what vmlet must never forget about a VM, written durably
// before and after every action that changes the host.
struct VmRecord {
  std::string driver;                         // the driver that owns the VM's VMM
  std::optional<drivers::VmmHandle> vmm;      // the VMM vmlet launched, until it is seen gone
  std::string spec_hash;                      // BootHash of the spec the VMM was booted with
  std::optional<WallTime> boot_requested_at;  // the last boot
  std::optional<WallTime> ready_at;           // when the last boot became Ready
  bool stop_requested = false;  // vmlet asked the VMM to stop: its exit is not a crash
  std::optional<WallTime> stop_requested_at;
  int64_t stop_grace_seconds = 30;    // of the latest valid manifest (used once it is deleted)
  uint32_t restart_count = 0;         // reboots after a crash or unrequested power-off
  uint32_t consecutive_failures = 0;  // the crash loop's n; reset after 5 min Ready
  // Stopped or Failed once a VMM has exited, else none (on disk: the
  // phase's name, or "").
  std::optional<api::VmState::Phase> last_exit_phase;
  std::string last_exit_reason;  // why, for Failed
  // The crash loop's next attempt: no restart before this (so a vmlet
  // restart does not cut a backoff short).
  std::optional<WallTime> restart_not_before;

  friend bool operator==(const VmRecord&, const VmRecord&) = default;
};

}  // namespace vmlet::controller
