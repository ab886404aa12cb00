#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmlet::testing::fake_ch {

// CH's VmState (the spec's enum minus BreakPoint, which needs a gdb build).
enum class VmState { kCreated, kRunning, kPaused, kShutdown };

// "Created", "Running", "Paused", "Shutdown": the strings vm.info reports.
std::string_view VmStateName(VmState state);

// One event-monitor event, e.g. {"vm", "booted"}.
struct VmmEvent {
  std::string source;
  std::string event;
  friend bool operator==(const VmmEvent&, const VmmEvent&) = default;
};

// A failed API call as CH reports it: the HTTP status (404 for "not
// created"/"config missing" since v53.0, 500 for everything else) and the
// error chain from outermost to root cause, which CH sends as a JSON array of
// strings and which always starts with "Error from API".
struct ApiError {
  int status = 500;
  std::vector<std::string> chain;
};

// What one call did: the events the VMM emitted, in order, and the error if
// it failed. A failed call may still have emitted events (CH emits "vm
// booting" before it finds no config, and "vm pausing" before it finds the VM
// cannot pause).
struct Outcome {
  std::vector<VmmEvent> events;
  std::optional<ApiError> error;
  bool ok() const { return !error.has_value(); }
};

// The VM lifecycle of one Cloud Hypervisor VMM, as in vmm/src/lib.rs and
// vm.rs at the spec's commit:
//   no config --vm.create--> config, no VM (vm.info: Created)
//   --vm.boot--> VM Running <--vm.pause/vm.resume--> Paused
//   Running/Paused --vm.shutdown--> config, no VM (Created again; re-bootable)
//   any --vm.delete--> no config (a booted VM is shut down first)
// A VM that is shut down is dropped at once, so kShutdown is never reported.
// Pure bookkeeping: no I/O, no time. Not thread-safe.
class VmStateMachine {
 public:
  // A config is stored (vm.create succeeded and no vm.delete since).
  bool created() const { return created_; }
  // A VM exists (booted, running or paused).
  bool has_vm() const { return vm_state_.has_value(); }
  // What vm.info reports. REQUIRES: created().
  VmState state() const { return vm_state_.value_or(VmState::kCreated); }

  Outcome Create();
  // `config_problem`: why the stored config cannot boot (CH validates it when
  // it builds the VM), or nullopt when it can.
  Outcome Boot(const std::optional<std::string>& config_problem);
  Outcome Pause();
  Outcome Resume();
  Outcome Shutdown();
  Outcome Reboot();
  Outcome PowerButton() const;
  Outcome Nmi() const;
  Outcome Counters() const;
  Outcome Info() const;
  Outcome Delete();
  Outcome VmmShutdown();
  // The guest powered itself off. CH without --no-shutdown deletes the VM
  // and ends the VMM (the caller then exits the process); with it
  // (`no_shutdown`), the VM is shut down and the VMM stays.
  Outcome GuestExit(bool no_shutdown);

 private:
  bool created_ = false;
  std::optional<VmState> vm_state_;  // set while a VM exists
};

}  // namespace vmlet::testing::fake_ch
