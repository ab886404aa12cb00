#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <memory>
#include <string_view>
#include <vector>

namespace vmlet::metrics {

// Every metric family vmlet exports (DESIGN §8), registered in one
// prometheus-cpp registry that the exposer (or a test's TextSerializer)
// collects. Label series that can be known at start exist from the start at 0,
// so a PromQL `rate()` or alert never sees a series appear out of nowhere.
//
// Thread-safe: prometheus-cpp metrics are atomic.
class VmletMetrics {
 public:
  // REQUIRES: `reasons` lists every value the `reason` label of
  // vmlet_manifest_errors_total can take.
  VmletMetrics(std::string_view version,
               const std::vector<std::string_view>& manifest_error_reasons);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // vmlet_manifest_errors_total{reason}: one manifest error found. An unknown
  // reason is counted under "other".
  void CountManifestError(std::string_view reason);
  // vmlet_manifests{state="valid"|"invalid"}: VMs whose current manifest is
  // valid, and VMs whose manifest is invalid (they keep their last good spec).
  void SetManifestCounts(double valid, double invalid);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& manifest_errors_;
  prometheus::Family<prometheus::Gauge>& manifests_;
  prometheus::Family<prometheus::Gauge>& build_info_;
};

}  // namespace vmlet::metrics
