#include "drivers/host/boot_refusal.h"

#include <array>
#include <string_view>

#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"

namespace vmlet::drivers {
namespace {

std::optional<BootRefusal> FromMessage(std::string_view message) {
  for (std::string_view reason : std::array{kDiskLocked, kImageNotReadable}) {
    if (message.size() > reason.size() + 2 && message.starts_with(reason) &&
        message.substr(reason.size(), 2) == ": ") {
      return BootRefusal{std::string(reason), std::string(message.substr(reason.size() + 2))};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<BootRefusal> AsBootRefusal(const api::Status& status) {
  if (status.ok() || status.code() != api::Status::Code::kUnavailable) return std::nullopt;
  return FromMessage(status.message());
}

std::optional<BootRefusal> AsBootRefusal(const api::VmState& exit) {
  if (exit.phase() != api::VmState::Phase::kFailed) return std::nullopt;
  return FromMessage(exit.reason());
}

}  // namespace vmlet::drivers
