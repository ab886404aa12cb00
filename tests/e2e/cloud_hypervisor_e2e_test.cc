// End to end, Cloud Hypervisor only: a fleet of VMs on fake-cloud-hypervisor
// (a process per VM, no KVM needed), which QEMU under TCG could not boot on a
// CI host. The scenarios every driver shares are in
// vm_lifecycle_e2e_test.cc.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

constexpr int kFleetSize = 200;
// 200 VMMs on a 2-core host that runs other builds: generous.
constexpr seconds kFleetTimeout{300};

// The lines of a Prometheus text exposition for `metric` whose labels
// include every one of `labels` (each `name="value"`).
std::vector<std::string> Series(const std::string& exposition, const std::string& metric,
                                const std::vector<std::string>& labels) {
  std::vector<std::string> found;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(metric + "{", 0) != 0) continue;
    bool all = true;
    for (const std::string& label : labels) all &= line.find(label) != std::string::npos;
    if (all) found.push_back(line);
  }
  return found;
}

double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// The sum of the values of those lines.
double Sum(const std::vector<std::string>& series) {
  double sum = 0;
  for (const std::string& line : series) {
    const size_t space = line.rfind(' ');
    if (space != std::string::npos) sum += std::strtod(line.c_str() + space + 1, nullptr);
  }
  return sum;
}

class CloudHypervisorE2eTest : public E2eTest {
 protected:
  CloudHypervisorE2eTest() : E2eTest(MakeCloudHypervisorBackend(FAKE_CH_BINARY)) {}

  // The port of the running vmlet's /metrics, from its log; 0 until it
  // serves.
  int MetricsPort() const {
    const std::string log = ReadFile(logs_.back());
    const size_t at = log.find("event=MetricsServing");
    if (at == std::string::npos) return 0;
    const size_t port_at = log.find("port=", at);
    if (port_at == std::string::npos) return 0;
    int port = 0;
    return std::sscanf(log.c_str() + port_at, "port=%d", &port) == 1 ? port : 0;
  }
};

// Given 200 VMs on the stand-in (one manifest each), all reach Ready, each
// with its own VMM. vmlet is stopped (SIGTERM) and started again: the new
// vmlet reports all 200 Ready (its own /metrics, not the status files the
// old one left), with the same VMM pids, one VMM per VM, no restart, no
// boot. Deleting every manifest then ends every VMM and removes every state
// directory.
TEST_F(CloudHypervisorE2eTest, TwoHundredVmsGetReadyAndAreAdoptedWithTheSamePidsAfterARestart) {
  std::vector<api::VmKey> keys;
  for (int i = 0; i < kFleetSize; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "vm-%03d", i);
    keys.push_back({"fleet", name});
  }
  for (const api::VmKey& key : keys) WriteManifest(key, Manifest(key));
  const auto started = std::chrono::steady_clock::now();
  StartVmlet({"--workers", "8"});

  int ready = 0;
  ASSERT_TRUE(WaitFor(kFleetTimeout,
                      [&] {
                        ready = 0;
                        for (const api::VmKey& key : keys) ready += Phase(Status(key)) == "Ready";
                        return ready == kFleetSize;
                      }))
      << ready << " of " << kFleetSize << " VMs Ready";
  const auto all_ready = std::chrono::steady_clock::now();

  std::map<std::string, pid_t> pids;
  std::map<std::string, int> boots;
  std::set<pid_t> distinct;
  for (const api::VmKey& key : keys) {
    const pid_t pid = VmmPid(Status(key));
    ASSERT_GT(pid, 0) << key.name;
    EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pid}) << key.name;
    pids[key.name] = pid;
    distinct.insert(pid);
    boots[key.name] = CountEvents(key, {"Booted", "Restarted"});
    EXPECT_EQ(boots[key.name], 1) << key.name << ":\n" << Events(key);
  }
  EXPECT_EQ(distinct.size(), static_cast<size_t>(kFleetSize));

  ASSERT_NO_FATAL_FAILURE(StopVmlet(seconds(60)));
  for (const api::VmKey& key : keys) {
    EXPECT_TRUE(Alive(pids[key.name])) << key.name << ": VMMs outlive vmlet";
  }

  const auto restarted = std::chrono::steady_clock::now();
  StartVmlet({"--workers", "8", "--metrics-addr", "127.0.0.1:0"});
  int port = 0;
  ASSERT_TRUE(WaitFor(seconds(30), [&] { return (port = MetricsPort()) > 0; }))
      << "vmlet did not log the port of its /metrics";
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  std::string metrics;
  size_t ready_series = 0;
  ASSERT_TRUE(WaitFor(kFleetTimeout,
                      [&] {
                        metrics = HttpGet(url).body;
                        ready_series = Series(metrics, "vmlet_vm_info",
                                              {"namespace=\"fleet\"", "phase=\"Ready\"",
                                               "driver=\"cloud-hypervisor\""})
                                           .size();
                        return ready_series == static_cast<size_t>(kFleetSize);
                      }))
      << ready_series << " of " << kFleetSize << " VMs Ready after the restart";
  const auto all_adopted = std::chrono::steady_clock::now();

  const std::vector<std::string> boot_calls =
      Series(metrics, "vmlet_driver_operations_total", {"op=\"boot\""});
  EXPECT_EQ(Sum(boot_calls), 0.0) << "nothing may be booted after the restart:\n"
                                  << ::testing::PrintToString(boot_calls);
  for (const api::VmKey& key : keys) {
    const auto status = Status(key);
    EXPECT_EQ(Phase(status), "Ready") << key.name;
    EXPECT_EQ(VmmPid(status), pids[key.name]) << key.name;
    EXPECT_EQ(status.value("restartCount", -1), 0) << key.name;
    EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pids[key.name]}) << key.name;
    EXPECT_EQ(CountEvents(key, {"Booted", "Restarted"}), boots[key.name]) << key.name << ":\n"
                                                                          << Events(key);
  }

  const auto deleting = std::chrono::steady_clock::now();
  for (const api::VmKey& key : keys) fs::remove(ManifestPath(key));
  size_t left = 0;
  EXPECT_TRUE(WaitFor(kFleetTimeout,
                      [&] {
                        left = 0;
                        for (const api::VmKey& key : keys) left += fs::exists(VmDir(key));
                        return left == 0;
                      }))
      << left << " state directories left";
  const auto all_deleted = std::chrono::steady_clock::now();
  EXPECT_TRUE(WaitFor(seconds(30), [&] { return VmmPids(tmp_).empty(); }))
      << VmmPids(tmp_).size() << " fake-cloud-hypervisor processes left";

  std::cout << kFleetSize << " VMs: Ready " << Seconds(all_ready - started)
            << " s after vmlet started; Ready again " << Seconds(all_adopted - restarted)
            << " s after the restart; deleted in " << Seconds(all_deleted - deleting) << " s\n";
}

}  // namespace
}  // namespace vmlet::testing
