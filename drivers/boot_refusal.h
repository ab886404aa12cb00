#pragma once

#include <ostream>
#include <string>
#include <string_view>

namespace vmlet::drivers {

// A boot refused for a reason that is no fault of the guest and that a later
// boot gets past once the cause is cleared: another process holds one of its
// disk images (kDiskLocked: on shared storage, the same VM still running on
// another host), or the VMM's user cannot open one of its images
// (kImageNotReadable). Drivers return it from Boot() when they refuse before
// or as the VMM starts, and from ExitState() when the VMM exited during its
// start-up for that reason. The reconciler shows the reason, boots again with
// backoff, and counts no restart (docs/reconcile.md).
struct BootRefusal {
  enum class Reason {
    kDiskLocked,
    kImageNotReadable,
  };

  Reason reason;
  std::string detail;  // the driver's words: which file, who holds it or who cannot open it

  friend bool operator==(const BootRefusal&, const BootRefusal&) = default;
};

// The reason as status.json, conditions, events and docs spell it:
// "DiskLocked", "ImageNotReadable".
constexpr std::string_view ReasonName(BootRefusal::Reason reason) {
  switch (reason) {
    case BootRefusal::Reason::kDiskLocked:
      return "DiskLocked";
    case BootRefusal::Reason::kImageNotReadable:
      return "ImageNotReadable";
  }
  return "BootRefused";
}

// "<ReasonName>: <detail>", for logs and test failures.
inline std::ostream& operator<<(std::ostream& os, const BootRefusal& refusal) {
  return os << ReasonName(refusal.reason) << ": " << refusal.detail;
}

}  // namespace vmlet::drivers
