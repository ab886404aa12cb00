#pragma once

#include <string>

#include "api/vmm_process.h"

namespace vmlet::drivers {

// What vmlet remembers about a VMM it launched, persisted in the VM's
// record.json the moment Boot() returns: enough to find the process again
// after vmlet restarts, and to prove it is still the same process.
struct VmmHandle {
  std::string driver;       // "qemu", "cloud-hypervisor", "fake"
  api::VmmProcess process;  // pid + start time (ticks since host boot)
  std::string boot_id;      // /proc/sys/kernel/random/boot_id when it was launched
  std::string vm_dir;       // <state-dir>/vms/<namespace>/<name>; the VMM's command line names it
  std::string socket_path;  // the VMM's control socket (QMP, CH API), under vm_dir

  friend bool operator==(const VmmHandle&, const VmmHandle&) = default;
};

}  // namespace vmlet::drivers
