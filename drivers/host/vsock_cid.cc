#include "drivers/host/vsock_cid.h"

namespace vmlet::drivers {

uint32_t VsockCid(const std::string& vm_dir) {
  // FNV-1a: stable across vmlet versions and restarts.
  uint32_t hash = 2166136261u;
  for (unsigned char c : vm_dir) {
    hash ^= c;
    hash *= 16777619u;
  }
  // CIDs 0-2 are reserved and 2^32-1 is VMADDR_CID_ANY.
  return 3 + hash % (0xFFFFFFFFu - 3);
}

}  // namespace vmlet::drivers
