#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "tests/fakes/fake_cloud_hypervisor/vm_state_machine.h"

namespace vmlet::testing::fake_ch {

// Writes the stream Cloud Hypervisor writes for `--event-monitor`: each event
// a pretty-printed (2-space indented, multi-line) JSON object followed by a
// blank line, keys in CH's order:
//   {
//     "timestamp": {
//       "secs": 0,
//       "nanos": 81234
//     },
//     "source": "vm",
//     "event": "booted",
//     "properties": null
//   }
//   <empty line>
// `timestamp` is the time since the VMM started (monotonic, a Rust Duration),
// not wall-clock time. Each event is written with write(2) as it happens.
// Not thread-safe.
class EventMonitor {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // Writes to `fd`, which it owns from now on; timestamps count from `start`.
  EventMonitor(int fd, TimePoint start) : fd_(fd), start_(start) {}
  ~EventMonitor();
  EventMonitor(const EventMonitor&) = delete;
  EventMonitor& operator=(const EventMonitor&) = delete;

  // Opens `path` as CH does (create, truncate, write-only). Returns null and
  // sets `error` on failure.
  static std::unique_ptr<EventMonitor> OpenPath(const std::string& path, TimePoint start,
                                                std::string& error);

  // Appends one event. `properties` empty is written as `null`, as CH does
  // for events without properties. Write errors are ignored, as CH does.
  void Emit(const VmmEvent& event, TimePoint now,
            const std::map<std::string, std::string>& properties = {});

 private:
  int fd_;
  TimePoint start_;
};

}  // namespace vmlet::testing::fake_ch
