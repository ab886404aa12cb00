#include "tests/fakes/fake_cloud_hypervisor/vm_state_machine.h"

#include <utility>

namespace vmlet::testing::fake_ch {
namespace {

// CH's messages (thiserror Display strings of HttpError::ApiError, ApiError
// and vm::Error); the chain starts at the HTTP layer.
constexpr char kFromApi[] = "Error from API";
constexpr char kNotCreated[] = "VM is not created";
constexpr char kMissingConfig[] = "VM config is missing";
constexpr char kAlreadyCreated[] = "VM is already created";
constexpr char kNotRunning[] = "VM is not running";

ApiError Error(int status, std::vector<std::string> causes) {
  ApiError error;
  error.status = status;
  error.chain.push_back(kFromApi);
  for (std::string& cause : causes) error.chain.push_back(std::move(cause));
  return error;
}

std::string Transition(VmState from, VmState to) {
  return "Invalid transition: InvalidStateTransition(" + std::string(VmStateName(from)) + ", " +
         std::string(VmStateName(to)) + ")";
}

}  // namespace

std::string_view VmStateName(VmState state) {
  switch (state) {
    case VmState::kCreated:
      return "Created";
    case VmState::kRunning:
      return "Running";
    case VmState::kPaused:
      return "Paused";
    case VmState::kShutdown:
      return "Shutdown";
  }
  return "Created";
}

Outcome VmStateMachine::Create() {
  Outcome outcome;
  if (created_) {
    outcome.error = Error(500, {"The VM could not be created", kAlreadyCreated});
    return outcome;
  }
  created_ = true;
  return outcome;
}

Outcome VmStateMachine::Boot(const std::optional<std::string>& config_problem) {
  Outcome outcome;
  if (has_vm()) {
    outcome.error = Error(500, {"The VM could not boot", kAlreadyCreated});
    return outcome;
  }
  outcome.events.push_back({"vm", "booting"});
  if (!created_) {
    outcome.error = Error(404, {"The VM could not boot", kMissingConfig});
    return outcome;
  }
  if (config_problem) {
    outcome.error =
        Error(500, {"The VM could not boot", "Failed to validate config", *config_problem});
    return outcome;
  }
  vm_state_ = VmState::kRunning;
  outcome.events.push_back({"vm", "booted"});
  return outcome;
}

Outcome VmStateMachine::Pause() {
  Outcome outcome;
  if (!has_vm()) {
    outcome.error = Error(500, {"The VM could not be paused", kNotRunning});
    return outcome;
  }
  outcome.events.push_back({"vm", "pausing"});
  if (*vm_state_ != VmState::kRunning) {
    outcome.error = Error(
        500, {"The VM could not be paused", "Cannot pause VM",
              "Failed to pause migratable component", Transition(*vm_state_, VmState::kPaused)});
    return outcome;
  }
  vm_state_ = VmState::kPaused;
  outcome.events.push_back({"vm", "paused"});
  return outcome;
}

Outcome VmStateMachine::Resume() {
  Outcome outcome;
  if (!has_vm()) {
    outcome.error = Error(500, {"The VM could not resume", kNotRunning});
    return outcome;
  }
  outcome.events.push_back({"vm", "resuming"});
  if (*vm_state_ != VmState::kPaused) {
    outcome.error = Error(
        500, {"The VM could not resume", "Cannot resume VM",
              "Failed to resume migratable component", Transition(*vm_state_, VmState::kRunning)});
    return outcome;
  }
  vm_state_ = VmState::kRunning;
  outcome.events.push_back({"vm", "resumed"});
  return outcome;
}

Outcome VmStateMachine::Shutdown() {
  Outcome outcome;
  if (!has_vm()) {
    outcome.error = Error(500, {"The VM could not shutdown", kNotRunning});
    return outcome;
  }
  // Running and Paused may both go to Shutdown; the VMM then drops the VM.
  vm_state_.reset();
  outcome.events.push_back({"vm", "shutdown"});
  return outcome;
}

Outcome VmStateMachine::Reboot() {
  Outcome outcome;
  outcome.events.push_back({"vm", "rebooting"});
  if (!has_vm()) {
    outcome.error = Error(404, {"The VM could not reboot", kNotCreated});
    return outcome;
  }
  vm_state_ = VmState::kRunning;
  outcome.events.push_back({"vm", "rebooted"});
  return outcome;
}

Outcome VmStateMachine::PowerButton() const {
  Outcome outcome;
  if (!has_vm()) outcome.error = Error(500, {"Error triggering power button", kNotRunning});
  return outcome;
}

Outcome VmStateMachine::Nmi() const {
  Outcome outcome;
  if (!has_vm()) outcome.error = Error(500, {"Error triggering NMI", kNotRunning});
  return outcome;
}

Outcome VmStateMachine::Counters() const {
  Outcome outcome;
  if (!has_vm()) outcome.error = Error(500, {"The VM counters are not available", kNotRunning});
  return outcome;
}

Outcome VmStateMachine::Info() const {
  Outcome outcome;
  if (!created_) outcome.error = Error(404, {"The VM info is not available", kNotCreated});
  return outcome;
}

Outcome VmStateMachine::Delete() {
  Outcome outcome;
  if (!created_) return outcome;  // idempotent
  if (has_vm()) outcome = Shutdown();
  created_ = false;
  outcome.events.push_back({"vm", "deleted"});
  return outcome;
}

Outcome VmStateMachine::VmmShutdown() {
  Outcome outcome = Delete();
  outcome.events.push_back({"vmm", "shutdown"});
  return outcome;
}

Outcome VmStateMachine::GuestExit(bool no_shutdown) {
  if (no_shutdown) return Shutdown();
  return VmmShutdown();
}

}  // namespace vmlet::testing::fake_ch
