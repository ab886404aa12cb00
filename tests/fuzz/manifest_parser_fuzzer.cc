// libFuzzer target for the manifest parser: any bytes, as YAML or as JSON,
// must give VMs or errors, never a crash, a hang, a leak or undefined
// behaviour. Seeded from manifests/examples by .ci/run.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "manifests/manifest_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first byte picks the file type, so both parsers are exercised.
  if (size == 0) return 0;
  const bool json = (data[0] & 1) != 0;
  std::string_view content(reinterpret_cast<const char*>(data + 1), size - 1);
  vmlet::manifests::ParseOptions options;
  vmlet::manifests::ParseResult result =
      vmlet::manifests::ParseManifest(json ? "fuzz.json" : "fuzz.yaml", content, options);
  // Every error must render; every VM must have passed validation.
  for (const auto& e : result.errors) (void)e.ToString();
  for (const auto& vm : result.vms) {
    if (vm.spec.name.empty() || vm.spec.kernel.empty()) __builtin_trap();
  }
  return 0;
}
