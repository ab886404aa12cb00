#include "metrics/metrics_endpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

namespace vmlet::metrics {
namespace {

using ::testing::HasSubstr;

// One test, because stopping a civetweb server takes up to its 2 s poll
// quantum. It binds real sockets on 127.0.0.1, port 0 (a free port); what is
// served is checked by tests/integration/metrics_test.cc.
TEST(MetricsEndpointTest, StartBindsAndBindFailuresAreErrorsNamingTheAddress) {
  auto registry = std::make_shared<prometheus::Registry>();
  MetricsEndpoint endpoint("127.0.0.1:0", registry);
  EXPECT_EQ(endpoint.port(), 0);  // the constructor opened nothing
  ASSERT_TRUE(endpoint.Start().ok());
  EXPECT_GT(endpoint.port(), 0);

  const std::string taken = "127.0.0.1:" + std::to_string(endpoint.port());
  MetricsEndpoint second(taken, registry);
  api::Status in_use = second.Start();
  EXPECT_FALSE(in_use.ok());
  EXPECT_THAT(in_use.message(), HasSubstr("cannot serve metrics on " + taken));
  EXPECT_EQ(second.port(), 0);

  // An address of no local interface (TEST-NET-1).
  MetricsEndpoint elsewhere("192.0.2.1:9470", registry);
  api::Status not_local = elsewhere.Start();
  EXPECT_FALSE(not_local.ok());
  EXPECT_THAT(not_local.message(), HasSubstr("192.0.2.1:9470"));

  endpoint.Stop();
  EXPECT_EQ(endpoint.port(), 0);
  endpoint.Stop();  // idempotent
}

}  // namespace
}  // namespace vmlet::metrics
