#include "metrics/metrics_endpoint.h"

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include <exception>
#include <utility>
#include <vector>

namespace vmlet::metrics {

MetricsEndpoint::MetricsEndpoint(std::string address,
                                 std::shared_ptr<prometheus::Registry> registry)
    : address_(std::move(address)), registry_(std::move(registry)) {}

MetricsEndpoint::~MetricsEndpoint() { Stop(); }

api::Status MetricsEndpoint::Start() {
  try {
    // civetweb binds in the constructor and throws when it cannot.
    auto exposer = std::make_unique<prometheus::Exposer>(address_, /*num_threads=*/2);
    exposer->RegisterCollectable(registry_, "/metrics");
    exposer_ = std::move(exposer);
  } catch (const std::exception& e) {
    return api::Status::Unavailable("cannot serve metrics on " + address_ + ": " + e.what());
  }
  return api::Status::Ok();
}

void MetricsEndpoint::Stop() { exposer_.reset(); }

int MetricsEndpoint::port() const {
  if (!exposer_) return 0;
  std::vector<int> ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace vmlet::metrics
