// `vmlet run --driver fake --metrics-addr 127.0.0.1:PORT` as a separate
// process, scraped over HTTP at /metrics with libcurl as Prometheus would:
// every VM appears in vmlet_vm_info with its phase, boots are in the boot
// histogram, reconciles are counted, and a deleted VM's series go away.
//
// vmlet is started by VmletProcess and ended by its recorded pid. Waits poll
// a condition until a deadline. Each test has its own temporary directory.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/vm_key.h"
#include "tests/support/files.h"
#include "tests/support/free_port.h"
#include "tests/support/http_client.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/vmlet_test.h"
#include "tests/support/wait_for.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

// The sample lines of an exposition text, without # HELP / # TYPE.
std::vector<std::string> SampleLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.push_back(line);
  }
  return out;
}

// The value of the series written exactly as `series` (name and labels, in
// the serializer's order: labels sorted by name), if it is there.
std::optional<double> Value(const std::string& text, const std::string& series) {
  for (const std::string& line : SampleLines(text)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

// Every sample line that mentions `needle`.
std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  for (const std::string& line : SampleLines(text)) {
    if (line.find(needle) != std::string::npos) out.push_back(line);
  }
  return out;
}

std::string InfoSeries(const api::VmKey& key, const std::string& phase,
                       const std::string& desired = "Running") {
  return "vmlet_vm_info{desired=\"" + desired + "\",driver=\"fake\",name=\"" + key.name +
         "\",namespace=\"" + key.ns + "\",node=\"metrics-node\",phase=\"" + phase + "\"}";
}

class MetricsTest : public VmletTest {
 protected:
  MetricsTest() : VmletTest("metrics", VMLET_BINARY) {}

  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void StartVmlet(const std::string& metrics_addr) {
    StartVmletRun({"--driver", "fake", "--fake-boot-delay", "200ms", "--fake-shutdown-delay",
                   "50ms", "--node-name", "metrics-node", "--metrics-addr", metrics_addr,
                   "--api-addr", "off"});
  }

  std::string Scrape() const { return HttpGet(url_).body; }

  std::string LogText() const { return ReadFile(logs_.back()); }

  std::string url_;
};

TEST_F(MetricsTest, ScrapeShowsEveryVmItsBootAndReconcilesAndForgetsADeletedVm) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  url_ = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  const std::vector<api::VmKey> vms = {{"prod", "web-1"}, {"prod", "web-2"}, {"dev", "db-1"}};
  for (const api::VmKey& key : vms) WriteManifest(key, FakeDriverManifest(key));
  ASSERT_NO_FATAL_FAILURE(StartVmlet("127.0.0.1:" + std::to_string(port)));

  std::string text;
  const bool all_ready = WaitFor(seconds(30), [&] {
    text = Scrape();
    for (const api::VmKey& key : vms) {
      if (Value(text, InfoSeries(key, "Ready")) != 1.0) return false;
    }
    return true;
  });
  ASSERT_TRUE(all_ready) << "not every VM is Ready in vmlet_vm_info after 30 s; scraped:\n"
                         << ::testing::PrintToString(LinesWith(text, "vmlet_vm_info"));

  // One info series per VM, and nothing else named vmlet_vm_info.
  EXPECT_EQ(LinesWith(text, "vmlet_vm_info{").size(), vms.size());
  for (const api::VmKey& key : vms) {
    const std::string stamp = "vmlet_vm_phase_transition_timestamp_seconds{name=\"" + key.name +
                              "\",namespace=\"" + key.ns + "\",node=\"metrics-node\"}";
    ASSERT_TRUE(Value(text, stamp).has_value()) << stamp;
    EXPECT_GT(*Value(text, stamp), 1.6e9) << stamp;  // a Unix time
  }
  EXPECT_EQ(Value(text, "vmlet_vm_boot_duration_seconds_count{driver=\"fake\"}"), 3.0);
  EXPECT_EQ(Value(text, "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\",le=\"+Inf\"}"), 3.0);
  EXPECT_EQ(Value(text, "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\",le=\"0.05\"}"),
            0.0);  // the fake guests take 200 ms
  EXPECT_GT(Value(text, "vmlet_reconcile_total{result=\"success\"}").value_or(0), 0.0);
  EXPECT_EQ(Value(text, "vmlet_reconcile_total{result=\"error\"}"), 0.0);
  EXPECT_GT(Value(text, "vmlet_reconcile_duration_seconds_count").value_or(0), 0.0);
  EXPECT_EQ(Value(text,
                  "vmlet_driver_operations_total{driver=\"fake\",op=\"boot\","
                  "result=\"ok\"}"),
            3.0);
  EXPECT_EQ(Value(text,
                  "vmlet_driver_operations_total{driver=\"qemu\",op=\"boot\","
                  "result=\"ok\"}"),
            0.0);
  EXPECT_GE(Value(text, "vmlet_workqueue_adds_total").value_or(0), 3.0);
  EXPECT_TRUE(Value(text, "vmlet_workqueue_depth").has_value());
  // Every reconcile left the queue first; a scrape may fall between a key
  // leaving the queue and its reconcile ending, one per worker (4).
  const double dequeued = Value(text, "vmlet_workqueue_queue_duration_seconds_count").value_or(-1);
  const double reconciled = Value(text, "vmlet_reconcile_duration_seconds_count").value_or(-1);
  EXPECT_GE(dequeued, reconciled);
  EXPECT_LE(dequeued, reconciled + 4);
  EXPECT_GT(Value(text, "vmlet_last_resync_timestamp_seconds").value_or(0), 1.6e9);
  EXPECT_EQ(Value(text, "vmlet_manifests{state=\"valid\"}"), 3.0);
  EXPECT_EQ(Value(text, "vmlet_manifests{state=\"invalid\"}"), 0.0);
  EXPECT_EQ(Value(text, std::string("vmlet_build_info{version=\"") + VMLET_VERSION + "\"}"), 1.0);
  EXPECT_EQ(Value(text, "vmlet_vmm_identity_mismatch_total{driver=\"fake\"}"), 0.0);
  // Five restart series per VM (one per reason), all at 0.
  const std::vector<std::string> restarts = LinesWith(text, "vmlet_vm_restarts_total{");
  EXPECT_EQ(restarts.size(), 5 * vms.size());
  for (const std::string& line : restarts) EXPECT_TRUE(line.ends_with(" 0")) << line;

  // A deleted VM's series go away; the others stay.
  fs::remove(ManifestPath(vms[0]));
  EXPECT_TRUE(WaitFor(seconds(30),
                      [&] {
                        text = Scrape();
                        return !text.empty() && LinesWith(text, "name=\"web-1\"").empty();
                      }))
      << "web-1 is still exported 30 s after its manifest was deleted:\n"
      << ::testing::PrintToString(LinesWith(text, "name=\"web-1\""));
  EXPECT_EQ(Value(text, InfoSeries(vms[1], "Ready")), 1.0);
  EXPECT_EQ(Value(text, InfoSeries(vms[2], "Ready")), 1.0);
  EXPECT_EQ(LinesWith(text, "vmlet_vm_info{").size(), 2u);
  EXPECT_GE(Value(text,
                  "vmlet_driver_operations_total{driver=\"fake\",op=\"cleanup\","
                  "result=\"ok\"}")
                .value_or(0),
            1.0);

  // A broken manifest is counted by reason, and its VM shows as invalid.
  WriteManifest(vms[1], FakeDriverManifest(vms[1], "Running", "\"two\""));
  EXPECT_TRUE(WaitFor(seconds(30), [&] {
    text = Scrape();
    return Value(text, "vmlet_manifests{state=\"invalid\"}") == 1.0;
  })) << ::testing::PrintToString(LinesWith(text, "vmlet_manifest"));
  double errors = 0;
  for (const std::string& line : LinesWith(text, "vmlet_manifest_errors_total{")) {
    errors += std::stod(line.substr(line.rfind(' ') + 1));
  }
  EXPECT_EQ(errors, 1.0) << ::testing::PrintToString(LinesWith(text, "vmlet_manifest_errors"));
  EXPECT_EQ(Value(text, "vmlet_manifest_errors_total{reason=\"other\"}"), 0.0);

  // Only /metrics is served.
  EXPECT_EQ(HttpGet("http://127.0.0.1:" + std::to_string(port) + "/").status, 404);

  vmlet_.Signal(SIGTERM);
  std::optional<int> status = vmlet_.WaitForExit(seconds(10));
  ASSERT_TRUE(status.has_value()) << "vmlet did not exit within 10 s of SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
  EXPECT_EQ(HttpGet(url_).status, 0) << "the metrics port still answers after vmlet exited";
}

TEST_F(MetricsTest, MetricsAddrOffServesNothing) {
  const api::VmKey key{"prod", "web-1"};
  WriteManifest(key, FakeDriverManifest(key));
  ASSERT_NO_FATAL_FAILURE(StartVmlet("off"));
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    return LogText().find("event=Ready") != std::string::npos;
  })) << "the VM did not become Ready in 30 s";
  EXPECT_EQ(LogText().find("event=MetricsServing"), std::string::npos);
  vmlet_.Signal(SIGTERM);
  std::optional<int> status = vmlet_.WaitForExit(seconds(10));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status;
}

TEST_F(MetricsTest, MetricsAddrInUseStopsVmletAtStartWithAClearError) {
  // Taken by the first vmlet; the second cannot have it.
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  url_ = "http://" + addr + "/metrics";
  ASSERT_NO_FATAL_FAILURE(StartVmlet(addr));
  ASSERT_TRUE(WaitFor(seconds(30), [&] { return HttpGet(url_).status == 200; }));

  VmletProcess second;
  const std::string second_log = tmp_ + "/second.log";
  ASSERT_EQ(second.Start(VMLET_BINARY,
                         {"run", "--manifests", manifests_, "--state-dir", tmp_ + "/state-2",
                          "--driver", "fake", "--metrics-addr", addr, "--api-addr", "off"},
                         second_log),
            "");
  std::optional<int> status = second.WaitForExit(seconds(30));
  ASSERT_TRUE(status.has_value()) << "the second vmlet did not stop";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "wait status " << *status;
  EXPECT_NE(TailOfFile(second_log, 20).find("cannot serve metrics on " + addr), std::string::npos)
      << TailOfFile(second_log, 20);
}

TEST_F(MetricsTest, MalformedMetricsAddrIsAUsageError) {
  VmletProcess bad;
  ASSERT_EQ(bad.Start(VMLET_BINARY,
                      {"run", "--manifests", manifests_, "--state-dir", state_, "--driver", "fake",
                       "--metrics-addr", "9470", "--api-addr", "off"},
                      NewLog()),
            "");
  std::optional<int> status = bad.WaitForExit(seconds(30));
  ASSERT_TRUE(status.has_value());
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 2) << "wait status " << *status;
}

}  // namespace
}  // namespace vmlet::testing
