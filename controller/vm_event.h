#pragma once

#include <string>

#include "controller/rfc3339_time.h"

namespace vmlet::controller {

// One line of events.jsonl.
struct Event {
  WallTime time{};
  std::string type;    // "Normal" or "Warning"
  std::string reason;  // CamelCase: Booted, Ready, Paused, Stopping, Killed, Crashed, ...
  std::string message;

  friend bool operator==(const Event&, const Event&) = default;
};

}  // namespace vmlet::controller
