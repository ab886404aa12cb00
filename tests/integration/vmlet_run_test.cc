// `vmlet run --driver fake` as a separate process over a real manifest
// directory: what an operator would see, read from the files vmlet writes
// (status.json per VM) and from the fake driver's own state file, which
// outlives vmlet as real VMMs do.
//
// Every vmlet is started by VmletProcess and ended by its recorded pid.
// Waits poll a condition until a deadline; none sleeps for a fixed time to
// let something happen. Each test has its own temporary directory, removed
// in TearDown.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/vm_key.h"
#include "tests/support/files.h"
#include "tests/support/manifest_builder.h"
#include "tests/support/proc_status.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/vmlet_test.h"
#include "tests/support/wait_for.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

double MsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count();
}

using testing::FakeDriverManifest;

// What the fake driver's state file (JSON lines, see fake_vm_driver.h) says
// about its VMMs. vmlet compacts the file when it starts: "count" lines carry
// the boots before the compaction, "boot" lines marked "replayed" restate
// VMMs that already existed; every other "boot" line is a new boot.
struct FakeDriverView {
  std::map<api::VmKey, int> boots;
  std::map<std::string, pid_t> live_pid_by_dir;  // VMMs booted, not exited, not cleaned up
  std::set<std::string> exited_dirs;             // VMMs that exited, not cleaned up yet

  static FakeDriverView Read(const std::string& state_file) {
    FakeDriverView view;
    std::ifstream in(state_file);
    for (std::string line; std::getline(in, line);) {
      json op = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!op.is_object() || !op.contains("op")) continue;  // a line being written
      const std::string kind = op.value("op", "");
      if (kind == "count") {
        view.boots[{op.value("ns", ""), op.value("name", "")}] = op.value("boots", 0);
        continue;
      }
      const std::string dir = op.value("dir", "");
      if (kind == "boot") {
        if (!op.value("replayed", false)) ++view.boots[{op.value("ns", ""), op.value("name", "")}];
        if (op.contains("exit")) {
          view.live_pid_by_dir.erase(dir);
          view.exited_dirs.insert(dir);
        } else {
          view.live_pid_by_dir[dir] = op.value("pid", 0);
          view.exited_dirs.erase(dir);
        }
      } else if (kind == "exit") {
        view.live_pid_by_dir.erase(dir);
        view.exited_dirs.insert(dir);
      } else if (kind == "cleanup") {
        view.live_pid_by_dir.erase(dir);
        view.exited_dirs.erase(dir);
      }
    }
    return view;
  }

  int BootCount(const api::VmKey& key) const {
    auto it = boots.find(key);
    return it == boots.end() ? 0 : it->second;
  }
};

class VmletRunTest : public VmletTest {
 protected:
  VmletRunTest() : VmletTest("int", VMLET_BINARY) { log_lines_shown_on_failure_ = 80; }

  std::string FakeStateFile() const { return state_ + "/fake-driver.jsonl"; }

  // Starts vmlet with its output going to vmlet-<n>.log in the temp dir.
  // Without a metrics endpoint: tests run in parallel (metrics_test.cc
  // covers it).
  void StartVmlet(const std::string& boot_delay, const std::string& shutdown_delay,
                  const std::vector<std::string>& extra_flags = {}) {
    std::vector<std::string> args = {"--driver",
                                     "fake",
                                     "--workers",
                                     "4",
                                     "--fake-boot-delay",
                                     boot_delay,
                                     "--fake-shutdown-delay",
                                     shutdown_delay,
                                     "--log-level",
                                     "info",
                                     "--metrics-addr",
                                     "off",
                                     "--api-addr",
                                     "off"};
    args.insert(args.end(), extra_flags.begin(), extra_flags.end());
    StartVmletRun(args);
  }

  // SIGTERM, then the exit status within `timeout`; returns how long it took.
  double StopVmletWithSigterm(milliseconds timeout) {
    const auto start = SteadyClock::now();
    vmlet_.Signal(SIGTERM);
    std::optional<int> status = vmlet_.WaitForExit(timeout);
    const double ms = MsSince(start);
    EXPECT_TRUE(status.has_value())
        << "vmlet did not exit within " << timeout.count() << " ms of SIGTERM";
    if (status) {
      EXPECT_TRUE(WIFEXITED(*status)) << "wait status " << *status;
      EXPECT_EQ(WEXITSTATUS(*status), 0);
    }
    return ms;
  }

  // The status.json of every VM directory (a directory without one, or one
  // that vanishes meanwhile, is skipped).
  std::map<api::VmKey, json> AllStatuses() const {
    std::map<api::VmKey, json> out;
    std::error_code ec;
    for (const fs::directory_entry& ns : fs::directory_iterator(state_ + "/vms", ec)) {
      std::error_code ec2;
      for (const fs::directory_entry& vm : fs::directory_iterator(ns.path(), ec2)) {
        json status = json::parse(ReadFile(vm.path().string() + "/status.json"), nullptr,
                                  /*allow_exceptions=*/false);
        if (status.is_object()) {
          out[{ns.path().filename().string(), vm.path().filename().string()}] = std::move(status);
        }
      }
    }
    return out;
  }

  static const json* Condition(const json& status, const std::string& type) {
    if (!status.is_object() || !status.contains("conditions")) return nullptr;
    for (const json& c : status["conditions"]) {
      if (c.value("type", "") == type) return &c;
    }
    return nullptr;
  }

  size_t CountPhase(const std::map<api::VmKey, json>& statuses, const std::string& phase) const {
    size_t n = 0;
    for (const auto& [key, status] : statuses) n += Phase(status) == phase;
    return n;
  }

  // Every VM in `keys` has phase `phase` in its status.json.
  bool AllInPhase(const std::vector<api::VmKey>& keys, const std::string& phase) const {
    for (const api::VmKey& key : keys) {
      if (Phase(Status(key)) != phase) return false;
    }
    return true;
  }

  size_t CountInLogs(const std::string& needle) const {
    size_t n = 0;
    for (const std::string& log : logs_) {
      const std::string text = ReadFile(log);
      for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    }
    return n;
  }

  bool LogsContain(const std::string& needle) const {
    for (const std::string& log : logs_) {
      if (ReadFile(log).find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

// The acceptance scenario at scale: 1,000 VMs in 10 namespaces converge;
// vmlet is SIGKILLed mid-convergence and restarted, and re-adopts every VMM
// instead of booting it again; edits to Paused and removed files are acted
// on; SIGTERM ends vmlet promptly and cleanly.
TEST_F(VmletRunTest, ThousandVmsConvergeSurviveSigkillPauseDeleteAndStopOnSigterm) {
  constexpr int kNamespaces = 10;
  constexpr int kPerNamespace = 100;
  constexpr size_t kVms = kNamespaces * kPerNamespace;
  std::vector<api::VmKey> all;
  std::vector<api::VmKey> to_pause, to_delete;
  for (int n = 0; n < kNamespaces; ++n) {
    for (int i = 0; i < kPerNamespace; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "vm-%03d", i);
      api::VmKey key{"ns-" + std::to_string(n), name};
      all.push_back(key);
      if (i == 10) to_pause.push_back(key);
      if (i == 20) to_delete.push_back(key);
    }
  }
  for (const api::VmKey& key : all) WriteManifest(key, FakeDriverManifest(key));
  const auto test_start = SteadyClock::now();

  // A 3 s guest boot: vmlet is killed while VMs are booted but not Ready.
  ASSERT_NO_FATAL_FAILURE(StartVmlet("3s", "200ms"));
  size_t booted_at_kill = 0, ready_at_kill = 0;
  ASSERT_TRUE(WaitFor(seconds(60),
                      [&] {
                        std::map<api::VmKey, json> statuses = AllStatuses();
                        size_t booted = 0;
                        for (const auto& [key, status] : statuses) booted += VmmPid(status) != 0;
                        booted_at_kill = booted;
                        ready_at_kill = CountPhase(statuses, "Ready");
                        return booted >= 50;
                      }))
      << "fewer than 50 VMs booted in 60 s (" << booted_at_kill << ")";
  ASSERT_LT(ready_at_kill, kVms) << "convergence finished before the SIGKILL";
  vmlet_.KillAndReap();
  std::cout << "SIGKILL after " << MsSince(test_start) << " ms: " << booted_at_kill
            << " VMs with a VMM in status.json, " << ready_at_kill << " Ready\n";

  ASSERT_NO_FATAL_FAILURE(StartVmlet("3s", "200ms"));
  const auto restart = SteadyClock::now();
  size_t ready = 0;
  EXPECT_TRUE(WaitFor(seconds(90),
                      [&] {
                        ready = CountPhase(AllStatuses(), "Ready");
                        return ready == kVms;
                      }))
      << ready << " of " << kVms << " VMs Ready 90 s after the restart";
  std::cout << "all " << kVms << " Ready " << MsSince(restart) << " ms after the restart ("
            << MsSince(test_start) << " ms after the first start)\n";
  ASSERT_FALSE(HasFailure());

  // No VM was booted twice, and none counts a restart.
  {
    FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
    std::map<api::VmKey, json> statuses = AllStatuses();
    int wrong_boots = 0, wrong_restarts = 0;
    for (const api::VmKey& key : all) {
      if (driver.BootCount(key) != 1 && ++wrong_boots <= 10) {
        ADD_FAILURE() << key << " was booted " << driver.BootCount(key) << " times";
      }
      const json& status = statuses[key];
      if (status.value("restartCount", -1) != 0 && ++wrong_restarts <= 10) {
        ADD_FAILURE() << key << " restartCount " << status.value("restartCount", -1);
      }
      EXPECT_EQ(driver.live_pid_by_dir[VmDir(key)], VmmPid(status)) << key;
    }
    EXPECT_EQ(wrong_boots, 0);
    EXPECT_EQ(wrong_restarts, 0);
    EXPECT_EQ(driver.live_pid_by_dir.size(), kVms);
  }
  ASSERT_FALSE(HasFailure());

  // 10 edited to Paused become Paused.
  const auto pause_start = SteadyClock::now();
  for (const api::VmKey& key : to_pause) WriteManifest(key, FakeDriverManifest(key, "Paused"));
  EXPECT_TRUE(WaitFor(seconds(20), [&] { return AllInPhase(to_pause, "Paused"); }))
      << "the VMs edited to Paused are not all Paused after 20 s";
  std::cout << "10 VMs Paused " << MsSince(pause_start) << " ms after their edits\n";
  for (const api::VmKey& key : to_pause) EXPECT_EQ(Status(key).value("desiredState", ""), "Paused");

  // 10 files removed: their VMs and state directories are gone.
  const auto delete_start = SteadyClock::now();
  for (const api::VmKey& key : to_delete) fs::remove(ManifestPath(key));
  EXPECT_TRUE(WaitFor(seconds(20), [&] {
    for (const api::VmKey& key : to_delete) {
      if (fs::exists(VmDir(key))) return false;
    }
    return true;
  })) << "the deleted VMs' state directories still exist after 20 s";
  std::cout << "10 deleted VMs gone " << MsSince(delete_start) << " ms after their files\n";
  // A file removed while vmlet reads the directory is a deletion, never a
  // manifest error.
  EXPECT_EQ(CountInLogs("ManifestInvalid"), 0u);
  {
    FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
    for (const api::VmKey& key : to_delete) {
      EXPECT_FALSE(driver.live_pid_by_dir.contains(VmDir(key))) << key << " still has a VMM";
      EXPECT_FALSE(driver.exited_dirs.contains(VmDir(key))) << key << " was not cleaned up";
    }
    EXPECT_EQ(driver.live_pid_by_dir.size(), kVms - to_delete.size());
    for (const api::VmKey& key : all) EXPECT_EQ(driver.BootCount(key), 1) << key;
  }
  // Everything else is untouched.
  {
    std::map<api::VmKey, json> statuses = AllStatuses();
    EXPECT_EQ(statuses.size(), kVms - to_delete.size());
    EXPECT_EQ(CountPhase(statuses, "Ready"), kVms - to_delete.size() - to_pause.size());
    EXPECT_EQ(CountPhase(statuses, "Paused"), to_pause.size());
  }

  std::cout << "vmlet VmRSS with " << kVms - to_delete.size()
            << " VMs: " << ProcStatusField(vmlet_.pid(), "VmRSS")
            << "; VMMs adopted without a record "
            << "after the SIGKILL: " << CountInLogs("event=Adopted") << "\n";
  const double stop_ms = StopVmletWithSigterm(seconds(10));
  std::cout << "SIGTERM -> exit in " << stop_ms << " ms; whole test " << MsSince(test_start)
            << " ms\n";
  EXPECT_FALSE(LogsContain("ReconcilePanic"));
}

// A broken edit to a running VM's manifest changes nothing about the VM and
// says why in its status; a SIGTERM'd vmlet leaves the VMMs running, and the
// next vmlet re-adopts them (same pids, no boot).
TEST_F(VmletRunTest, InvalidEditKeepsVmReadyAndSigtermLeavesVmmsForTheNextVmlet) {
  const std::vector<api::VmKey> keys = {{"small", "a"}, {"small", "b"}, {"small", "c"}};
  const api::VmKey& a = keys[0];
  for (const api::VmKey& key : keys) WriteManifest(key, FakeDriverManifest(key));
  ASSERT_NO_FATAL_FAILURE(StartVmlet("100ms", "100ms"));
  ASSERT_TRUE(WaitFor(seconds(20), [&] { return AllInPhase(keys, "Ready"); }));
  std::map<api::VmKey, pid_t> pids;
  for (const api::VmKey& key : keys) {
    pids[key] = VmmPid(Status(key));
    ASSERT_NE(pids[key], 0) << key;
  }

  WriteManifest(a, FakeDriverManifest(a, "Running", "\"two\""));
  json status;
  ASSERT_TRUE(WaitFor(seconds(10),
                      [&] {
                        status = Status(a);
                        const json* valid = Condition(status, "ManifestValid");
                        return valid != nullptr && valid->value("status", "") == "False";
                      }))
      << "no ManifestValid=False in 10 s: " << status.dump();
  const std::string message = Condition(status, "ManifestValid")->value("message", "");
  EXPECT_NE(message.find(ManifestPath(a) + ":10:9"), std::string::npos) << message;
  EXPECT_NE(message.find("spec.cpus"), std::string::npos) << message;
  EXPECT_EQ(Phase(status), "Ready");
  EXPECT_EQ(VmmPid(status), pids[a]);
  EXPECT_TRUE(LogsContain("event=ManifestInvalid"));

  // The fix is taken; the VM is still the same one (cpus did not change).
  WriteManifest(a, FakeDriverManifest(a));
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    status = Status(a);
    const json* valid = Condition(status, "ManifestValid");
    return valid != nullptr && valid->value("status", "") == "True";
  })) << status.dump();
  EXPECT_EQ(Phase(status), "Ready");
  EXPECT_EQ(VmmPid(status), pids[a]);

  const double stop_ms = StopVmletWithSigterm(seconds(10));
  std::cout << "SIGTERM -> exit in " << stop_ms << " ms\n";
  {
    FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
    EXPECT_EQ(driver.live_pid_by_dir.size(), keys.size()) << "a VMM did not outlive vmlet";
    for (const api::VmKey& key : keys) EXPECT_EQ(driver.live_pid_by_dir[VmDir(key)], pids[key]);
  }

  // status.json is re-derived from the host: without it, the next vmlet must
  // observe each VMM afresh and write what it sees.
  for (const api::VmKey& key : keys) fs::remove(VmDir(key) + "/status.json");
  ASSERT_NO_FATAL_FAILURE(StartVmlet("100ms", "100ms"));
  EXPECT_TRUE(WaitFor(seconds(20), [&] { return AllInPhase(keys, "Ready"); }));
  FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
  for (const api::VmKey& key : keys) {
    json s = Status(key);
    EXPECT_EQ(VmmPid(s), pids[key]) << key;
    EXPECT_EQ(s.value("restartCount", -1), 0) << key;
    EXPECT_EQ(driver.BootCount(key), 1) << key;
    EXPECT_EQ(driver.live_pid_by_dir[VmDir(key)], pids[key]) << key;
  }
  StopVmletWithSigterm(seconds(10));
  EXPECT_FALSE(LogsContain("ReconcilePanic"));
}

// docs/manifests.md: bad input never changes a running VM; the VM keeps its last
// known good desired state. That holds across a vmlet restart too: a manifest
// broken while vmlet was down must not read as "deleted" and stop the VM.
TEST_F(VmletRunTest, ManifestBrokenWhileVmletWasDownDoesNotStopTheVm) {
  const api::VmKey key{"small", "a"};
  WriteManifest(key, FakeDriverManifest(key));
  ASSERT_NO_FATAL_FAILURE(StartVmlet("100ms", "100ms"));
  ASSERT_TRUE(WaitFor(seconds(20), [&] { return Phase(Status(key)) == "Ready"; }));
  const pid_t pid = VmmPid(Status(key));
  StopVmletWithSigterm(seconds(10));

  WriteManifest(key, FakeDriverManifest(key, "Running", "\"two\""));
  ASSERT_NO_FATAL_FAILURE(StartVmlet("100ms", "100ms"));
  json status;
  ASSERT_TRUE(WaitFor(seconds(10),
                      [&] {
                        status = Status(key);
                        const json* valid = Condition(status, "ManifestValid");
                        return valid != nullptr && valid->value("status", "") == "False";
                      }))
      << "no ManifestValid=False in 10 s: " << status.dump();
  // The pass that first wrote ManifestValid=False is the one that decided
  // what to do with the VM: a stop would show in this same status.
  EXPECT_EQ(Phase(status), "Ready") << status.dump();
  EXPECT_EQ(VmmPid(status), pid);
  EXPECT_EQ(status.value("reason", ""), "") << status.dump();
  FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
  EXPECT_EQ(driver.live_pid_by_dir[VmDir(key)], pid);
  EXPECT_FALSE(LogsContain("ACPI power button pressed"))
      << "vmlet stopped a VM whose manifest is invalid";
}

// --share-root: a shared dir that resolves outside every root, here through
// a symlink planted inside one, is refused by `vmlet validate` and by
// `vmlet run` alike; a shared dir inside boots.
TEST_F(VmletRunTest, ShareRootRejectsASharedDirEscapingThroughASymlink) {
  const std::string shares = tmp_ + "/shares";
  fs::create_directories(shares + "/data");
  fs::create_directory_symlink("/etc", shares + "/etc");
  const api::VmKey good{"small", "good"}, bad{"small", "bad"};
  auto with_share = [](const api::VmKey& key, const std::string& host_path) {
    return FakeDriverManifest(key) + "  sharedDirs:\n  - hostPath: " + host_path +
           "\n    tag: data\n";
  };
  WriteManifest(good, with_share(good, shares + "/data"));
  WriteManifest(bad, with_share(bad, shares + "/etc"));
  const std::string expected = ManifestPath(bad) +
                               ":13:15: spec.sharedDirs[0].hostPath: resolves to \"/etc\", "
                               "outside every --share-root (" +
                               shares + ")";

  // vmlet validate: exit 1, the error, and nothing about the good one.
  const CommandResult validate =
      RunToExit(VMLET_BINARY, {"validate", "--share-root", shares, manifests_},
                tmp_ + "/validate.out", seconds(20));
  EXPECT_EQ(validate.exit_code, 1);
  EXPECT_EQ(validate.output, "ok small/good " + ManifestPath(good) + ":1:1\n" + expected +
                                 "\n1 valid VirtualMachine, 1 error\n");

  // vmlet run: the good VM boots; the bad one never does, and says why.
  ASSERT_NO_FATAL_FAILURE(StartVmlet("100ms", "100ms", {"--share-root", shares}));
  ASSERT_TRUE(WaitFor(seconds(20), [&] { return Phase(Status(good)) == "Ready"; }));
  json bad_status;
  ASSERT_TRUE(WaitFor(seconds(10), [&] {
    bad_status = Status(bad);
    const json* valid = Condition(bad_status, "ManifestValid");
    return valid != nullptr && valid->value("status", "") == "False";
  })) << bad_status.dump();
  EXPECT_NE(Condition(bad_status, "ManifestValid")->value("message", "").find(expected),
            std::string::npos)
      << bad_status.dump();
  EXPECT_EQ(Phase(bad_status), "Failed") << bad_status.dump();
  FakeDriverView driver = FakeDriverView::Read(FakeStateFile());
  EXPECT_EQ(driver.live_pid_by_dir.count(VmDir(bad)), 0u) << "the escaping VM was booted";
}

// `vmlet validate` exits 1 on an invalid manifest, 0 on the examples.
TEST_F(VmletRunTest, ValidateExitsOneOnAnInvalidManifestAndZeroOnTheExamples) {
  const std::string bad = tmp_ + "/bad.yaml";
  ASSERT_TRUE(WriteFile(bad, "apiVersion: vmlet.dev/v1alpha1\n"));
  const CommandResult invalid =
      RunToExit(VMLET_BINARY, {"validate", bad}, tmp_ + "/invalid.out", seconds(20));
  EXPECT_EQ(invalid.exit_code, 1) << invalid.output;
  const CommandResult examples =
      RunToExit(VMLET_BINARY, {"validate", std::string(VMLET_SOURCE_DIR) + "/manifests/examples"},
                tmp_ + "/examples.out", seconds(20));
  EXPECT_EQ(examples.exit_code, 0) << examples.output;
}

}  // namespace
}  // namespace vmlet::testing
