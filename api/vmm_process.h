#pragma once

#include <sys/types.h>

#include <cstdint>

namespace vmlet::api {

// Who a VMM process is, in a form that survives PID reuse: its pid and its
// start time in clock ticks since host boot (field 22 of /proc/<pid>/stat).
// A pid alone may name a stranger once the VMM has exited; the pair, checked
// together with the host's boot id, does not.
struct VmmProcess {
  pid_t pid = 0;
  uint64_t start_time_ticks = 0;

  friend bool operator==(const VmmProcess&, const VmmProcess&) = default;
};

}  // namespace vmlet::api
