#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "controller/rfc3339_time.h"

namespace vmlet::controller {

// A status condition, shaped as Kubernetes has them.
struct Condition {
  std::string type;     // Ready, Paused, ManifestValid, CrashLoopBackOff, Converged
  std::string status;   // "True", "False", "Unknown"
  std::string reason;   // CamelCase, machine-readable
  std::string message;  // for people
  WallTime last_transition_time{};

  friend bool operator==(const Condition&, const Condition&) = default;
};

// status.json: what vmlet last saw of a VM, for people and tools.
struct VmStatus {
  // Starting | Running | Ready | Paused | Stopped | Failed; "" before the first look.
  std::string phase;
  std::string ip;
  std::string reason;
  std::string desired_state;        // Running | Paused | Stopped | Deleted
  std::string observed_generation;  // the spec hash the status describes
  std::vector<Condition> conditions;
  uint32_t restart_count = 0;
  std::optional<double> last_boot_duration_seconds;
  struct Vmm {
    std::string driver;
    pid_t pid = 0;
    uint64_t start_time_ticks = 0;
    friend bool operator==(const Vmm&, const Vmm&) = default;
  };
  std::optional<Vmm> vmm;

  friend bool operator==(const VmStatus&, const VmStatus&) = default;
};

// Sets the condition of `c.type` (adding it if missing). Its
// lastTransitionTime becomes `c.last_transition_time` only when the status
// value changes; otherwise the old time is kept, as Kubernetes does.
void SetCondition(VmStatus& status, Condition c);
// The condition of that type, or nullptr.
const Condition* FindCondition(const VmStatus& status, std::string_view type);

}  // namespace vmlet::controller
