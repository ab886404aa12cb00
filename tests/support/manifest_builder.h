#pragma once

#include <string>

#include "api/vm_key.h"

namespace vmlet::testing {

// A VirtualMachine manifest: apiVersion, kind, metadata (name, namespace,
// and `labels` as written, a YAML flow map such as "{app: web}", when it is
// not empty), then "spec:" followed by `spec_lines` as written (each
// indented two spaces and ending in a newline).
std::string VmManifest(const api::VmKey& key, const std::string& spec_lines,
                       const std::string& labels = "");

// A valid manifest of `key` for vmlet's default driver with `kernel`,
// `cpus` and 512 MiB of memory, nothing else.
std::string MinimalVmManifest(const api::VmKey& key, int cpus = 2,
                              const std::string& kernel = "/var/lib/vmlet/images/vmlinuz");

// A manifest for the fake driver, as the integration tests and the benchmark
// write them. Without labels, line 10 is `cpus`, its value at column 9
// (tests assert errors there); `cpus` is inserted as written, so
// `"\"two\""` makes it invalid.
std::string FakeDriverManifest(const api::VmKey& key, const std::string& desired_state = "Running",
                               const std::string& cpus = "1", const std::string& labels = "");

}  // namespace vmlet::testing
