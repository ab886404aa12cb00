// End to end with real VMs: `vmlet run` as a daemon process (default driver
// qemu), a manifest directory, and QEMU booting the test guest that
// tests/guest/build-guest makes (a Debian cloud kernel + busybox initramfs,
// about 3 s to its ready marker under TCG). What an operator would check is
// checked the way they would: status.json, the VM's serial log, QMP
// `query-status` on the VM's own socket, and /proc.
//
// Processes: every vmlet is started by VmletProcess and ended by its recorded
// pid; every QEMU is found by its command line naming this test's own
// temporary directory, and ended by that pid in TearDown. Waits poll a
// condition until a deadline; none sleeps a fixed time to let something
// happen.

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
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
#include "drivers/host/proc_fs.h"
#include "drivers/qemu/qmp_client.h"
#include "tests/integration/vmlet_process.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using SteadyClock = std::chrono::steady_clock;

constexpr milliseconds kPoll{25};
constexpr seconds kBootTimeout{90};  // TCG boots take ~3 s alone, longer on a busy CI host

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream content;
  content << in.rdbuf();
  return content.str();
}

void WriteFileAtomically(const std::string& path, const std::string& content) {
  const fs::path target(path);
  const fs::path temp = target.parent_path() / ("." + target.filename().string() + ".tmp");
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out << content;
  }
  fs::rename(temp, target);
}

bool WaitFor(milliseconds timeout, const std::function<bool()>& done) {
  const auto deadline = SteadyClock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (SteadyClock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPoll);
  }
}

// The guest's kernel and initramfs, built (or found cached) once per run.
struct Guest {
  std::string kernel;
  std::string initramfs;
  std::string error;
};

const Guest& TestGuest() {
  static const Guest guest = [] {
    Guest g;
    const std::string cmd = std::string(VMLET_SOURCE_DIR) + "/tests/guest/build-guest";
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (pipe == nullptr) return Guest{"", "", "cannot run " + cmd};
    std::vector<std::string> lines;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
      std::string line(buf);
      while (!line.empty() && line.back() == '\n') line.pop_back();
      lines.push_back(line);
    }
    const int status = ::pclose(pipe);
    if (status != 0 || lines.size() != 2) {
      return Guest{"", "", cmd + " failed (status " + std::to_string(status) + ")"};
    }
    return Guest{lines[0], lines[1], ""};
  }();
  return guest;
}

class QemuE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(TestGuest().error, "");
    char dir[] = "/tmp/vmlet-e2e-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    tmp_ = dir;
    manifests_ = tmp_ + "/manifests";
    state_ = tmp_ + "/state";
    fs::create_directories(manifests_);
  }

  void TearDown() override {
    vmlet_.KillAndReap();
    if (HasFailure()) {
      for (const std::string& log : logs_) {
        std::cerr << "---- last lines of " << log << " ----\n" << TailOfFile(log, 60);
      }
      std::error_code ec;
      for (const auto& entry : fs::recursive_directory_iterator(state_ + "/vms", ec)) {
        const std::string name = entry.path().filename();
        if (name == "serial.log" || name == "vmm.log" || name == "events.jsonl") {
          std::cerr << "---- last lines of " << entry.path() << " ----\n"
                    << TailOfFile(entry.path(), 15);
        }
      }
    }
    // Every QEMU this test's vmlet started names this test's directory.
    for (pid_t pid : QemuPids(tmp_)) ::kill(pid, SIGKILL);
    for (pid_t pid : VirtiofsdPids(tmp_)) ::kill(pid, SIGKILL);
    WaitFor(seconds(10), [&] { return QemuPids(tmp_).empty() && VirtiofsdPids(tmp_).empty(); });
    for (auto& p : others_) p->KillAndReap();
    std::error_code ignored;
    fs::remove_all(tmp_, ignored);
  }

  std::string ManifestPath(const api::VmKey& key) const {
    return manifests_ + "/" + key.ns + "-" + key.name + ".yaml";
  }
  std::string VmDir(const api::VmKey& key) const {
    return state_ + "/vms/" + key.ns + "/" + key.name;
  }

  // A manifest of the test guest; `extra` is appended to its spec.
  std::string Manifest(const api::VmKey& key, const std::string& extra = "") const {
    return "apiVersion: vmlet.dev/v1alpha1\n"
           "kind: VirtualMachine\n"
           "metadata:\n"
           "  name: " +
           key.name +
           "\n"
           "  namespace: " +
           key.ns +
           "\n"
           "spec:\n"
           "  kernel: " +
           TestGuest().kernel +
           "\n"
           "  initramfs: " +
           TestGuest().initramfs +
           "\n"
           "  memoryMb: 256\n"
           "  stopGracePeriodSeconds: 60\n" +
           extra;
  }

  void WriteManifest(const api::VmKey& key, const std::string& content) {
    WriteFileAtomically(ManifestPath(key), content);
  }

  void StartVmlet() {
    const std::string log = tmp_ + "/vmlet-" + std::to_string(logs_.size() + 1) + ".log";
    logs_.push_back(log);
    ASSERT_EQ(vmlet_.Start(VMLET_BINARY,
                           {"run", "--manifests", manifests_, "--state-dir", state_, "--log-level",
                            "debug", "--resync", "5s", "--metrics-addr", "off"},
                           log),
              "");
  }

  void StopVmlet() {
    vmlet_.Signal(SIGTERM);
    std::optional<int> status = vmlet_.WaitForExit(seconds(30));
    ASSERT_TRUE(status.has_value()) << "vmlet did not exit within 30 s of SIGTERM";
  }

  json Status(const api::VmKey& key) const {
    return json::parse(ReadFile(VmDir(key) + "/status.json"), nullptr, false);
  }
  static std::string Phase(const json& s) { return s.is_object() ? s.value("phase", "") : ""; }
  static pid_t VmmPid(const json& s) {
    if (!s.is_object() || !s.contains("vmm") || !s["vmm"].is_object()) return 0;
    return s["vmm"].value("pid", 0);
  }
  static std::string ConditionStatus(const json& s, const std::string& type) {
    if (!s.is_object() || !s.contains("conditions")) return "";
    for (const json& c : s["conditions"]) {
      if (c.value("type", "") == type) return c.value("status", "");
    }
    return "";
  }
  std::string Events(const api::VmKey& key) const { return ReadFile(VmDir(key) + "/events.jsonl"); }

  bool WaitPhase(const api::VmKey& key, const std::string& phase, milliseconds timeout) {
    const bool ok = WaitFor(timeout, [&] { return Phase(Status(key)) == phase; });
    EXPECT_TRUE(ok) << key.ns << "/" << key.name << " never reached " << phase
                    << "; status: " << Status(key).dump();
    return ok;
  }

  // Live (not zombie) processes whose command line names `dir` (a VM's
  // directory, or this test's temporary directory) through a QMP socket.
  static std::vector<pid_t> QemuPids(const std::string& dir) {
    drivers::LinuxProcFs proc;
    std::vector<pid_t> found;
    api::StatusOr<std::vector<pid_t>> pids = proc.ListPids();
    if (!pids.ok()) return found;
    for (pid_t pid : *pids) {
      api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
      if (!info.ok() || info->state == 'Z') continue;
      for (const std::string& arg : info->cmdline) {
        if (arg.rfind("unix:" + dir, 0) == 0 && arg.find("/qmp.sock,") != std::string::npos) {
          found.push_back(pid);
          break;
        }
      }
    }
    return found;
  }

  // Live processes with an argument naming a virtio-fs socket under `dir`:
  // the VM's virtiofsd sidecars.
  static std::vector<pid_t> VirtiofsdPids(const std::string& dir) {
    drivers::LinuxProcFs proc;
    std::vector<pid_t> found;
    api::StatusOr<std::vector<pid_t>> pids = proc.ListPids();
    if (!pids.ok()) return found;
    for (pid_t pid : *pids) {
      api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
      if (!info.ok() || info->state == 'Z' || info->cmdline.empty()) continue;
      if (info->cmdline[0].find("virtiofsd") == std::string::npos) continue;
      for (const std::string& arg : info->cmdline) {
        if (arg.find(dir + "/virtiofs-") != std::string::npos) {
          found.push_back(pid);
          break;
        }
      }
    }
    return found;
  }

  // QMP `query-status` on the VM's own socket, as an operator would ask.
  static std::string QmpRunState(const std::string& vm_dir) {
    const auto deadline = SteadyClock::now() + seconds(10);
    api::StatusOr<drivers::QmpClientPtr> qmp =
        drivers::QmpClient::Connect(vm_dir + "/qmp.sock", deadline);
    if (!qmp.ok()) return "error: " + qmp.status().ToString();
    api::StatusOr<json> status = (*qmp)->Execute("query-status", nullptr, deadline);
    if (!status.ok()) return "error: " + status.status().ToString();
    return status->value("status", "");
  }

  static bool Alive(pid_t pid) {
    drivers::LinuxProcFs proc;
    api::StatusOr<drivers::ProcessInfo> info = proc.ReadProcess(pid);
    return info.ok() && info->state != 'Z';
  }

  std::string tmp_, manifests_, state_;
  VmletProcess vmlet_;
  std::vector<std::unique_ptr<VmletProcess>> others_;  // non-vmlet processes a test started
  std::vector<std::string> logs_;
};

// Given a manifest, vmlet boots it to Ready; Paused pauses it (QMP agrees);
// Running resumes it; Stopped powers the guest off through ACPI (the
// kernel's power-down line, no kill); Running boots it again; removing the
// file stops it and removes its state directory.
TEST_F(QemuE2eTest, LifecycleFromManifestToDeletion) {
  const api::VmKey key{"demo", "life"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  json status = Status(key);
  // No NIC: the guest's init reports the loopback address.
  EXPECT_EQ(status.value("ip", ""), "127.0.0.1");
  const pid_t pid = VmmPid(status);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(QemuPids(VmDir(key)), std::vector<pid_t>{pid});
  EXPECT_EQ(QmpRunState(VmDir(key)), "running");
  EXPECT_GT(status.value("lastBootDurationSeconds", 0.0), 0.0);

  WriteManifest(key, Manifest(key, "  desiredState: Paused\n"));
  ASSERT_TRUE(WaitPhase(key, "Paused", seconds(30)));
  const pid_t paused_pid = VmmPid(Status(key));
  EXPECT_EQ(paused_pid, pid) << "pausing must not reboot";
  EXPECT_EQ(QmpRunState(VmDir(key)), "paused");
  EXPECT_EQ(ConditionStatus(Status(key), "Paused"), "True");

  WriteManifest(key, Manifest(key, "  desiredState: Running\n"));
  ASSERT_TRUE(WaitPhase(key, "Ready", seconds(30)));
  EXPECT_EQ(QmpRunState(VmDir(key)), "running");
  EXPECT_EQ(VmmPid(Status(key)), paused_pid) << "resuming must not reboot";

  WriteManifest(key, Manifest(key, "  desiredState: Stopped\n"));
  ASSERT_TRUE(WaitPhase(key, "Stopped", seconds(60)));
  EXPECT_TRUE(WaitFor(seconds(10), [&] { return !Alive(paused_pid); }));
  EXPECT_NE(ReadFile(VmDir(key) + "/serial.log").find("reboot: Power down"), std::string::npos)
      << "the guest must power itself off (ACPI), not be killed";
  EXPECT_EQ(Events(key).find("Killed"), std::string::npos);
  EXPECT_TRUE(QemuPids(VmDir(key)).empty());

  WriteManifest(key, Manifest(key, "  desiredState: Running\n"));
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  EXPECT_EQ(Status(key).value("restartCount", -1), 0) << "an operator's start is not a restart";

  fs::remove(ManifestPath(key));
  EXPECT_TRUE(WaitFor(seconds(60), [&] { return !fs::exists(VmDir(key)); }))
      << "state directory still there; status: " << Status(key).dump();
  EXPECT_TRUE(QemuPids(VmDir(key)).empty());
}

// Given a Ready VM whose QEMU is SIGKILLed, vmlet sees the crash, boots it
// again (restartPolicy Always, after the first crash-loop delay) and counts
// the restart.
TEST_F(QemuE2eTest, SigkillOfQemuRebootsTheVmAndCountsARestart) {
  const api::VmKey key{"demo", "crashy"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t first = VmmPid(Status(key));
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);

  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(15), [&] {
    const json s = Status(key);
    return Phase(s) == "Ready" && VmmPid(s) != first;
  })) << Status(key).dump();
  const json status = Status(key);
  EXPECT_EQ(status.value("restartCount", -1), 1);
  EXPECT_NE(Events(key).find("killed by signal 9 (SIGKILL)"), std::string::npos);
  EXPECT_EQ(QemuPids(VmDir(key)).size(), 1u);
}

// Given three VMs booting, vmlet is SIGKILLed and started again: each VM
// keeps exactly its one QEMU (same pid), none is booted again, all get Ready.
TEST_F(QemuE2eTest, VmletKilledWhileThreeVmsBootAdoptsThemWithoutRebooting) {
  const std::vector<api::VmKey> keys = {{"demo", "a"}, {"demo", "b"}, {"demo", "c"}};
  for (const api::VmKey& key : keys) WriteManifest(key, Manifest(key));
  StartVmlet();
  std::map<std::string, pid_t> pids;
  ASSERT_TRUE(WaitFor(seconds(30), [&] {
    for (const api::VmKey& key : keys) {
      const pid_t pid = VmmPid(Status(key));
      if (pid == 0) return false;
      pids[key.name] = pid;
    }
    return true;
  }));
  int still_starting = 0;
  for (const api::VmKey& key : keys) still_starting += Phase(Status(key)) == "Starting";
  vmlet_.Signal(SIGKILL);
  ASSERT_TRUE(vmlet_.WaitForExit(seconds(10)).has_value());
  EXPECT_GT(still_starting, 0) << "vmlet was meant to die while VMs were still booting";

  StartVmlet();
  for (const api::VmKey& key : keys) ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  for (const api::VmKey& key : keys) {
    EXPECT_EQ(QemuPids(VmDir(key)), std::vector<pid_t>{pids[key.name]}) << key.name;
    EXPECT_EQ(VmmPid(Status(key)), pids[key.name]) << key.name;
    EXPECT_EQ(Status(key).value("restartCount", -1), 0) << key.name;
  }
}

// Given a record whose pid now belongs to an unrelated live process, that
// process is never signalled, and the VM is booted afresh.
TEST_F(QemuE2eTest, RecordedPidOwnedByAStrangerIsNeverSignalledAndTheVmBootsAfresh) {
  const api::VmKey key{"demo", "reused"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t qemu = VmmPid(Status(key));
  StopVmlet();
  ASSERT_EQ(::kill(qemu, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return !Alive(qemu); }));

  // The stranger: a process of its own that ignores nothing, so any signal
  // vmlet could send (TERM, KILL) would end it.
  others_.push_back(std::make_unique<VmletProcess>());
  VmletProcess& stranger = *others_.back();
  ASSERT_EQ(stranger.Start("/bin/sleep", {"600"}, tmp_ + "/stranger.log"), "");
  const std::string record_path = VmDir(key) + "/record.json";
  json record = json::parse(ReadFile(record_path));
  record["vmm"]["pid"] = stranger.pid();
  WriteFileAtomically(record_path, record.dump(2));

  StartVmlet();
  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(15), [&] {
    const json s = Status(key);
    // Not the stale status of before the restart: a new QEMU.
    return Phase(s) == "Ready" && VmmPid(s) != stranger.pid() && VmmPid(s) != qemu &&
           VmmPid(s) != 0;
  })) << Status(key).dump();
  EXPECT_TRUE(Alive(stranger.pid())) << "the stranger was signalled";
  EXPECT_NE(Events(key).find("IdentityMismatch"), std::string::npos);
  EXPECT_EQ(QemuPids(VmDir(key)).size(), 1u);
}

// Given a corrupt record.json for a running VM, vmlet quarantines it and
// adopts the running QEMU (found by its command line) instead of booting a
// second one.
TEST_F(QemuE2eTest, CorruptRecordIsQuarantinedAndTheRunningVmAdopted) {
  const api::VmKey key{"demo", "corrupt"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t qemu = VmmPid(Status(key));
  StopVmlet();
  WriteFileAtomically(VmDir(key) + "/record.json", "{\"version\": 1, \"vmm\": {\"pid\": ");

  StartVmlet();
  ASSERT_TRUE(WaitFor(seconds(30),
                      [&] {
                        return Events(key).find("Adopted") != std::string::npos &&
                               Phase(Status(key)) == "Ready";
                      }))
      << Status(key).dump() << Events(key);
  bool quarantined = false;
  for (const auto& entry : fs::directory_iterator(VmDir(key))) {
    quarantined |= entry.path().filename().string().rfind("record.json.corrupt-", 0) == 0;
  }
  EXPECT_TRUE(quarantined);
  EXPECT_EQ(VmmPid(Status(key)), qemu);
  EXPECT_EQ(QemuPids(VmDir(key)), std::vector<pid_t>{qemu});
}

// Given a Ready VM, an invalid edit to its manifest leaves it running
// untouched and shows the error in its status.
TEST_F(QemuE2eTest, InvalidEditKeepsTheVmRunningAndShowsTheError) {
  const api::VmKey key{"demo", "steady"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t qemu = VmmPid(Status(key));

  WriteManifest(key, Manifest(key, "  cpus: many\n"));
  ASSERT_TRUE(WaitFor(seconds(20), [&] {
    return ConditionStatus(Status(key), "ManifestValid") == "False";
  })) << Status(key).dump();
  const json status = Status(key);
  EXPECT_EQ(Phase(status), "Ready");
  EXPECT_EQ(VmmPid(status), qemu);
  EXPECT_EQ(QmpRunState(VmDir(key)), "running");
  EXPECT_NE(status.dump().find("spec.cpus"), std::string::npos) << status.dump();
  EXPECT_EQ(QemuPids(VmDir(key)), std::vector<pid_t>{qemu});
}

// Given a VM with a read-write and a readOnly shared dir, vmlet starts one
// virtiofsd per dir before QEMU; the guest mounts both, can write to the
// read-write one and cannot write to the readOnly one (enforced on the
// host); deleting the VM ends the sidecars.
TEST_F(QemuE2eTest, SharedDirsAreServedBySidecarsAndReadOnlyIsEnforcedOnTheHost) {
  if (::geteuid() != 0) GTEST_SKIP() << "virtiofsd's sandbox needs root";
  const api::VmKey key{"demo", "shared"};
  const std::string rw = tmp_ + "/share-rw", ro = tmp_ + "/share-ro";
  fs::create_directories(rw);
  fs::create_directories(ro);
  WriteManifest(key, Manifest(key,
                              "  cmdline: \"console=ttyS0 panic=-1 vmlet.mount=rw vmlet.mount=ro "
                              "vmlet.write=rw vmlet.write=ro\"\n"
                              "  sharedDirs:\n"
                              "    - {hostPath: " +
                                  rw +
                                  ", tag: rw}\n"
                                  "    - {hostPath: " +
                                  ro + ", tag: ro, readOnly: true}\n"));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  // One recorded sidecar per dir, each alive (with its default namespace
  // sandbox, virtiofsd forks a child of its own, so there may be more
  // processes than sidecars).
  const json sidecars = json::parse(ReadFile(VmDir(key) + "/sidecars.json"), nullptr, false);
  ASSERT_TRUE(sidecars.is_array()) << ReadFile(VmDir(key) + "/sidecars.json");
  ASSERT_EQ(sidecars.size(), 2u);
  const std::vector<pid_t> running = VirtiofsdPids(VmDir(key));
  for (const json& sidecar : sidecars) {
    EXPECT_NE(std::find(running.begin(), running.end(), sidecar.value("pid", 0)), running.end())
        << sidecar.dump();
  }
  const std::string serial = ReadFile(VmDir(key) + "/serial.log");
  EXPECT_NE(serial.find("VMLET_WRITE rw ok"), std::string::npos) << serial;
  EXPECT_NE(serial.find("VMLET_WRITE ro failed"), std::string::npos) << serial;
  EXPECT_EQ(ReadFile(rw + "/written-by-guest"), "written by the guest\n");
  EXPECT_FALSE(fs::exists(ro + "/written-by-guest"));

  fs::remove(ManifestPath(key));
  EXPECT_TRUE(WaitFor(seconds(60), [&] { return !fs::exists(VmDir(key)); }));
  EXPECT_TRUE(WaitFor(seconds(10), [&] { return VirtiofsdPids(VmDir(key)).empty(); }));
  EXPECT_TRUE(QemuPids(VmDir(key)).empty());
}

}  // namespace
}  // namespace vmlet::testing
