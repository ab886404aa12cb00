#include "metrics/vmlet_metrics.h"

#include <string>

namespace vmlet::metrics {

VmletMetrics::VmletMetrics(std::string_view version,
                           const std::vector<std::string_view>& manifest_error_reasons)
    : registry_(std::make_shared<prometheus::Registry>()),
      manifest_errors_(prometheus::BuildCounter()
                           .Name("vmlet_manifest_errors_total")
                           .Help("Manifest errors found, by kind of mistake.")
                           .Register(*registry_)),
      manifests_(prometheus::BuildGauge()
                     .Name("vmlet_manifests")
                     .Help("VMs in the manifest directory whose manifest is valid or invalid.")
                     .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("vmlet_build_info")
                      .Help("Always 1; the version label says which vmlet is running.")
                      .Register(*registry_)) {
  for (std::string_view reason : manifest_error_reasons) {
    manifest_errors_.Add({{"reason", std::string(reason)}});
  }
  manifest_errors_.Add({{"reason", "other"}});
  manifests_.Add({{"state", "valid"}});
  manifests_.Add({{"state", "invalid"}});
  build_info_.Add({{"version", std::string(version)}}).Set(1);
}

void VmletMetrics::CountManifestError(std::string_view reason) {
  const std::string label(reason);
  // Has() avoids creating an unbounded set of series from unexpected input.
  if (manifest_errors_.Has({{"reason", label}})) {
    manifest_errors_.Add({{"reason", label}}).Increment();
  } else {
    manifest_errors_.Add({{"reason", "other"}}).Increment();
  }
}

void VmletMetrics::SetManifestCounts(double valid, double invalid) {
  manifests_.Add({{"state", "valid"}}).Set(valid);
  manifests_.Add({{"state", "invalid"}}).Set(invalid);
}

}  // namespace vmlet::metrics
