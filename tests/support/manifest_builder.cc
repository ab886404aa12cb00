#include "tests/support/manifest_builder.h"

namespace vmlet::testing {

std::string VmManifest(const api::VmKey& key, const std::string& spec_lines,
                       const std::string& labels) {
  std::string yaml = "apiVersion: vmlet.dev/v1alpha1\n";
  yaml += "kind: VirtualMachine\n";
  yaml += "metadata:\n";
  yaml += "  name: " + key.name + "\n";
  yaml += "  namespace: " + key.ns + "\n";
  if (!labels.empty()) yaml += "  labels: " + labels + "\n";
  yaml += "spec:\n";
  return yaml + spec_lines;
}

std::string MinimalVmManifest(const api::VmKey& key, int cpus, const std::string& kernel) {
  return VmManifest(
      key, "  kernel: " + kernel + "\n  cpus: " + std::to_string(cpus) + "\n  memoryMb: 512\n");
}

std::string FakeDriverManifest(const api::VmKey& key, const std::string& desired_state,
                               const std::string& cpus, const std::string& labels) {
  return VmManifest(key,
                    "  desiredState: " + desired_state +
                        "\n"
                        "  driver: fake\n"
                        "  kernel: /var/lib/vmlet/images/vmlinuz\n"
                        "  cpus: " +
                        cpus +
                        "\n"
                        "  memoryMb: 128\n",
                    labels);
}

}  // namespace vmlet::testing
