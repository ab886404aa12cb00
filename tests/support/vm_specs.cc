#include "tests/support/vm_specs.h"

namespace vmlet::testing {

api::VmSpec MinimalVmSpec(const api::VmKey& key, const std::string& kernel, uint32_t cpus,
                          uint64_t memory_mb) {
  api::VmSpec spec;
  spec.ns = key.ns;
  spec.name = key.name;
  spec.kernel = kernel;
  spec.cpus = cpus;
  spec.memory_mb = memory_mb;
  return spec;
}

}  // namespace vmlet::testing
