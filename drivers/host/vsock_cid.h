#pragma once

#include <cstdint>
#include <string>

namespace vmlet::drivers {

// The vsock context id every driver gives the VM in `vm_dir` (QEMU's
// vhost-vsock-pci guest-cid, Cloud Hypervisor's vsock cid): derived from
// vm_dir, stable across vmlet versions and restarts, in [3, 2^32-2].
uint32_t VsockCid(const std::string& vm_dir);

}  // namespace vmlet::drivers
