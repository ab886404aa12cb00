#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

namespace vmlet::api {

// What a hypervisor reports about one VM (the seed's VmState), plus the
// reason for a failure and the guest's IP once it is ready.
class VmState {
 public:
  enum class Phase {
    kStarting,  // the VMM is being created or the guest is booting
    kRunning,   // the VMM says the guest executes; readiness not yet seen
    kReady,     // running, and the guest has reported "VMRS_READY <ip>"
    kPaused,    // execution suspended, memory kept
    kStopped,   // stopped on request or powered off by the guest
    kFailed,    // failed to boot, timed out, or the VMM died
  };

  static VmState Starting() { return VmState(Phase::kStarting, ""); }
  static VmState Running() { return VmState(Phase::kRunning, ""); }
  static VmState Ready(std::string ip) { return VmState(Phase::kReady, std::move(ip)); }
  static VmState Paused() { return VmState(Phase::kPaused, ""); }
  static VmState Stopped() { return VmState(Phase::kStopped, ""); }
  static VmState Failed(std::string reason) { return VmState(Phase::kFailed, std::move(reason)); }

  Phase phase() const { return phase_; }

  // True when the hypervisor reports the guest as executing (Running or Ready).
  bool is_running() const { return phase_ == Phase::kRunning || phase_ == Phase::kReady; }
  // True once the guest has reported readiness.
  bool is_ready() const { return phase_ == Phase::kReady; }
  // The guest's IP address when Ready, otherwise nothing.
  std::optional<std::string_view> ip() const;
  // Why the VM failed when Failed, otherwise empty.
  std::string_view reason() const;

  // The seed's display form: "starting", "running", "ready (10.0.1.2)",
  // "paused", "stopped", "failed: timeout".
  std::string ToString() const;

  friend bool operator==(const VmState&, const VmState&) = default;

 private:
  VmState(Phase phase, std::string detail) : phase_(phase), detail_(std::move(detail)) {}

  Phase phase_;
  std::string detail_;  // the IP when Ready, the reason when Failed
};

// The phase as status.json and the API spell it: "Starting", "Running",
// "Ready", "Paused", "Stopped", "Failed".
std::string_view PhaseName(VmState::Phase phase);

inline std::ostream& operator<<(std::ostream& os, const VmState& state) {
  return os << state.ToString();
}

}  // namespace vmlet::api
