#pragma once

#include <string>
#include <string_view>

#include "controller/rfc3339_time.h"

namespace vmlet::controller {

// An event's type, as Kubernetes has them.
enum class EventType { kNormal, kWarning };

// "Normal" or "Warning", as events.jsonl and the API spell them.
constexpr std::string_view EventTypeName(EventType type) {
  return type == EventType::kWarning ? "Warning" : "Normal";
}

// One line of events.jsonl.
struct Event {
  WallTime time{};
  std::string type;    // EventTypeName(): "Normal" or "Warning"
  std::string reason;  // CamelCase: Booted, Ready, Paused, Stopping, Killed, Crashed, ...
  std::string message;

  friend bool operator==(const Event&, const Event&) = default;
};

}  // namespace vmlet::controller
