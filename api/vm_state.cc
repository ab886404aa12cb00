#include "api/vm_state.h"

namespace vmlet::api {

std::optional<std::string_view> VmState::ip() const {
  if (phase_ != Phase::kReady) return std::nullopt;
  return std::string_view(detail_);
}

std::string_view VmState::reason() const {
  return phase_ == Phase::kFailed ? std::string_view(detail_) : std::string_view();
}

std::string VmState::ToString() const {
  switch (phase_) {
    case Phase::kStarting:
      return "starting";
    case Phase::kRunning:
      return "running";
    case Phase::kReady:
      return "ready (" + detail_ + ")";
    case Phase::kPaused:
      return "paused";
    case Phase::kStopped:
      return "stopped";
    case Phase::kFailed:
      return "failed: " + detail_;
  }
  return "unknown";
}

std::string_view PhaseName(VmState::Phase phase) {
  switch (phase) {
    case VmState::Phase::kStarting:
      return "Starting";
    case VmState::Phase::kRunning:
      return "Running";
    case VmState::Phase::kReady:
      return "Ready";
    case VmState::Phase::kPaused:
      return "Paused";
    case VmState::Phase::kStopped:
      return "Stopped";
    case VmState::Phase::kFailed:
      return "Failed";
  }
  return "Unknown";
}

}  // namespace vmlet::api
