#include "tests/fakes/fake_cloud_hypervisor/event_monitor.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

namespace vmlet::testing::fake_ch {

EventMonitor::~EventMonitor() {
  if (fd_ >= 0) ::close(fd_);
}

std::unique_ptr<EventMonitor> EventMonitor::OpenPath(const std::string& path, TimePoint start,
                                                     std::string& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    error = "cannot open event monitor file " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::make_unique<EventMonitor>(fd, start);
}

void EventMonitor::Emit(const VmmEvent& event, TimePoint now,
                        const std::map<std::string, std::string>& properties) {
  const auto since_start = std::chrono::duration_cast<std::chrono::nanoseconds>(now - start_);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_start);
  // ordered_json keeps insertion order, which is serde's field order.
  nlohmann::ordered_json json;
  json["timestamp"] =
      nlohmann::ordered_json{{"secs", secs.count()}, {"nanos", (since_start - secs).count()}};
  json["source"] = event.source;
  json["event"] = event.event;
  if (properties.empty()) {
    json["properties"] = nullptr;
  } else {
    json["properties"] = properties;
  }
  const std::string text = json.dump(2) + "\n\n";
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd_, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    written += static_cast<size_t>(n);
  }
}

}  // namespace vmlet::testing::fake_ch
