#include "drivers/cloud_hypervisor/ch_event_parser.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "drivers/unique_fd.h"

namespace vmlet::drivers {
namespace {

using nlohmann::json;

bool IsSpace(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

int64_t Integer(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return 0;
  return it->get<int64_t>();
}

}  // namespace

std::vector<ChEvent> ChEventParser::Feed(std::string_view bytes) {
  std::vector<ChEvent> events;
  for (char c : bytes) {
    if (depth_ == 0) {
      if (c != '{') {
        // Between objects only whitespace belongs; a run of anything else
        // counts once.
        if (!IsSpace(c) && !in_garbage_) {
          in_garbage_ = true;
          ++malformed_;
        }
        continue;
      }
      in_garbage_ = false;
      object_.clear();
      in_string_ = false;
      escaped_ = false;
    }
    object_ += c;
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{') {
      ++depth_;
    } else if (c == '}' && --depth_ == 0) {
      ChEvent event;
      if (ParseObject(object_, event)) {
        events.push_back(std::move(event));
      } else {
        ++malformed_;
      }
      object_.clear();
    }
  }
  return events;
}

bool ChEventParser::ParseObject(const std::string& text, ChEvent& out) {
  const json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!object.is_object()) return false;
  auto source = object.find("source");
  auto event = object.find("event");
  if (source == object.end() || !source->is_string() || event == object.end() ||
      !event->is_string()) {
    return false;
  }
  out.source = source->get<std::string>();
  out.event = event->get<std::string>();
  if (auto timestamp = object.find("timestamp");
      timestamp != object.end() && timestamp->is_object()) {
    out.timestamp = std::chrono::seconds(Integer(*timestamp, "secs")) +
                    std::chrono::nanoseconds(Integer(*timestamp, "nanos"));
  }
  if (auto properties = object.find("properties");
      properties != object.end() && properties->is_object()) {
    for (const auto& [key, value] : properties->items()) {
      out.properties[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  return true;
}

void ChEventSummary::Add(const ChEvent& event) {
  ++events;
  if (event.source == "vm") {
    if (event.event == "booting") {
      booting_at = event.timestamp;
      booted_at.reset();
    } else if (event.event == "booted" && booting_at && !booted_at) {
      booted_at = event.timestamp;
    } else if (event.event == "shutdown") {
      vm_shutdown = true;
    }
  } else if (event.source == "vmm" && event.event == "shutdown") {
    vmm_shutdown = true;
  } else if (event.source == "guest" && event.event == "panic") {
    std::string text;
    for (const auto& [key, value] : event.properties) {
      text += (text.empty() ? "" : ", ") + key + "=" + value;
    }
    guest_panic = text;
  }
}

std::optional<std::chrono::nanoseconds> ChEventSummary::BootDuration() const {
  if (!booting_at || !booted_at) return std::nullopt;
  return *booted_at - *booting_at;
}

api::StatusOr<ChEventSummary> ReadChEventSummary(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return api::Status::NotFound("no event-monitor file " + path);
    return api::Status::Internal("cannot open " + path + ": " + std::strerror(errno));
  }
  ChEventParser parser;
  ChEventSummary summary;
  char buffer[16 * 1024];
  while (true) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return api::Status::Internal("cannot read " + path + ": " + std::strerror(errno));
    if (n == 0) break;
    for (const ChEvent& event : parser.Feed(std::string_view(buffer, static_cast<size_t>(n)))) {
      summary.Add(event);
    }
  }
  return summary;
}

}  // namespace vmlet::drivers
