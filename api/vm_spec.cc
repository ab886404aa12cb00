#include "api/vm_spec.h"

namespace vmlet::api {

std::string_view ToString(DesiredState state) {
  switch (state) {
    case DesiredState::kRunning:
      return "Running";
    case DesiredState::kPaused:
      return "Paused";
    case DesiredState::kStopped:
      return "Stopped";
  }
  return "Unknown";
}

std::string_view ToString(RestartPolicy policy) {
  switch (policy) {
    case RestartPolicy::kAlways:
      return "Always";
    case RestartPolicy::kOnFailure:
      return "OnFailure";
    case RestartPolicy::kNever:
      return "Never";
  }
  return "Unknown";
}

std::optional<DesiredState> ParseDesiredState(std::string_view text) {
  for (auto s : {DesiredState::kRunning, DesiredState::kPaused, DesiredState::kStopped}) {
    if (text == ToString(s)) return s;
  }
  return std::nullopt;
}

std::optional<RestartPolicy> ParseRestartPolicy(std::string_view text) {
  for (auto p : {RestartPolicy::kAlways, RestartPolicy::kOnFailure, RestartPolicy::kNever}) {
    if (text == ToString(p)) return p;
  }
  return std::nullopt;
}

}  // namespace vmlet::api
