#pragma once

#include <cstdint>
#include <string>

#include "api/vm_key.h"
#include "api/vm_spec.h"

namespace vmlet::testing {

// A valid VmSpec with only what every VM has: its key, a kernel, `cpus` and
// `memory_mb`; every other field at its default.
api::VmSpec MinimalVmSpec(const api::VmKey& key = {"prod", "web-1"},
                          const std::string& kernel = "/img/vmlinuz", uint32_t cpus = 2,
                          uint64_t memory_mb = 512);

}  // namespace vmlet::testing
