#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace vmlet::drivers {

// One event of Cloud Hypervisor's event monitor (`--event-monitor`).
struct ChEvent {
  // `timestamp` {secs, nanos}: time since the VMM started (monotonic).
  std::chrono::nanoseconds timestamp{0};
  std::string source;  // "vmm", "vm", "virtio-device", "cpu_manager", "guest", ...
  std::string event;   // "starting", "booting", "booted", "shutdown", "panic", ...
  // `properties`: a string map, or null (empty here). Non-string values are
  // kept as their JSON text.
  std::map<std::string, std::string> properties;

  friend bool operator==(const ChEvent&, const ChEvent&) = default;
};

// Splits the event-monitor stream into events: CH
// writes each event as a pretty-printed JSON object over several lines,
// followed by a blank line. The parser does not rely on the blank lines: it
// follows the braces (outside JSON strings), so an object is parsed exactly
// when its closing brace has been fed, whatever the whitespace between
// objects, and a partly written object (the end of a file CH is still
// writing) waits for the rest.
//
// An object that is not an event (not JSON, or without string "source" and
// "event") and any text outside objects are skipped and counted in
// malformed(); the parser carries on with the next object.
//
// Not thread-safe.
class ChEventParser {
 public:
  // Feeds the next bytes of the stream; returns the events they complete,
  // in stream order.
  std::vector<ChEvent> Feed(std::string_view bytes);

  // True when bytes of an unfinished object are held.
  bool partial() const { return depth_ > 0; }
  // Objects or stray text skipped so far.
  size_t malformed() const { return malformed_; }

 private:
  // Parses one complete object's text into `out`; false when it is no event.
  static bool ParseObject(const std::string& text, ChEvent& out);

  std::string object_;  // the unfinished object's bytes, from its '{'
  int depth_ = 0;       // open braces of the current object (0: between objects)
  bool in_string_ = false;
  bool escaped_ = false;     // the previous byte in a string was a backslash
  bool in_garbage_ = false;  // inside a run of text outside any object
  size_t malformed_ = 0;
};

// What a VMM's event stream says about its VM's life, from the events so far.
struct ChEventSummary {
  // Timestamps (since the VMM started) of the last "vm booting" and the
  // first "vm booted" after it.
  std::optional<std::chrono::nanoseconds> booting_at;
  std::optional<std::chrono::nanoseconds> booted_at;
  bool vm_shutdown = false;   // "vm shutdown": the VM was shut down (guest or API)
  bool vmm_shutdown = false;  // "vmm shutdown": the VMM is ending in order
  // "guest panic" (pvpanic): the properties, as text.
  std::optional<std::string> guest_panic;
  size_t events = 0;  // events added

  // Takes one event into account.
  void Add(const ChEvent& event);

  // How long the last boot took inside CH: booting -> booted. Nothing until
  // both are seen.
  std::optional<std::chrono::nanoseconds> BootDuration() const;
};

// Reads the event-monitor file at `path` from its start. NotFound when there
// is no such file; Internal when it cannot be read. An unfinished last
// object is left out.
api::StatusOr<ChEventSummary> ReadChEventSummary(const std::string& path);

}  // namespace vmlet::drivers
