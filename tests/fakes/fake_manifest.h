#pragma once

#include <string>

#include "api/vm_key.h"

namespace vmlet::testing {

// A manifest for the fake driver, as the integration tests and the benchmark
// write them. Line 10 is `cpus`, its value at column 9 (tests assert errors
// there); `cpus` is inserted as written, so `"\"two\""` makes it invalid.
inline std::string FakeDriverManifest(const api::VmKey& key,
                                      const std::string& desired_state = "Running",
                                      const std::string& cpus = "1") {
  return "apiVersion: vmlet.dev/v1alpha1\n"
         "kind: VirtualMachine\n"
         "metadata:\n"
         "  name: " +
         key.name +
         "\n"
         "  namespace: " +
         key.ns +
         "\n"
         "spec:\n"
         "  desiredState: " +
         desired_state +
         "\n"
         "  driver: fake\n"
         "  kernel: /var/lib/vmlet/images/vmlinuz\n"
         "  cpus: " +
         cpus +
         "\n"
         "  memoryMb: 128\n";
}

}  // namespace vmlet::testing
