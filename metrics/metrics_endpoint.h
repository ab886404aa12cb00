#pragma once

#include <memory>
#include <string>

#include "api/status.h"

namespace prometheus {
class Exposer;
class Registry;
}  // namespace prometheus

namespace vmlet::metrics {

// Serves one registry in the Prometheus text format at
// http://<address>/metrics (prometheus-cpp's Exposer on civetweb); every
// other path answers 404. The constructor opens nothing: Start() binds.
//
// Not thread-safe: Start() and Stop() from one thread. Serving itself runs on
// the exposer's own threads and only reads the registry.
class MetricsEndpoint {
 public:
  // `address` is "HOST:PORT" ("127.0.0.1:9470", "[::1]:9470"; port 0 picks a
  // free one).
  MetricsEndpoint(std::string address, std::shared_ptr<prometheus::Registry> registry);
  // Stop().
  ~MetricsEndpoint();

  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // Binds `address` and starts serving. Unavailable, with the address and
  // the server's reason, when it cannot (port in use, address not local or
  // not parseable). REQUIRES: not started.
  [[nodiscard]] api::Status Start();
  // Stops serving and closes the socket. Idempotent.
  void Stop();

  // The port it listens on; 0 when not started.
  int port() const;

 private:
  const std::string address_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace vmlet::metrics
