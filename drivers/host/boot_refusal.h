#pragma once

// A boot refused for a reason that is no fault of the guest and that a later
// boot gets past once the cause is cleared: another process holds one of its
// disk images (DiskLocked, drivers/host/disk_lock.h), or the VMM's user
// cannot open one of its images (ImageNotReadable, image_access.h). The
// reconciler shows the reason, boots again with backoff, and counts no
// restart (docs/reconcile.md).

#include <optional>
#include <string>

#include "api/status.h"
#include "api/vm_state.h"

namespace vmlet::drivers {

struct BootRefusal {
  std::string reason;  // "DiskLocked" or "ImageNotReadable"
  std::string detail;  // the driver's words: which file, who holds it or who cannot open it
};

// From a failed Boot() call.
std::optional<BootRefusal> AsBootRefusal(const api::Status& status);
// From the exit state of a VMM that ended during its start-up.
std::optional<BootRefusal> AsBootRefusal(const api::VmState& exit);

}  // namespace vmlet::drivers
