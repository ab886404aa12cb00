// End to end, for every driver: `vmlet run` as a daemon process and a
// manifest directory, with real VMMs — QEMU booting the test guest that
// tests/guest/build-guest makes (a Debian cloud kernel + busybox initramfs,
// about 3 s to its ready marker under TCG), and fake-cloud-hypervisor (a
// strict stand-in for Cloud Hypervisor whose simulated guest takes 3 s).
// Each scenario is written once and runs for both (VmmBackend says how each
// hypervisor is found and asked). What an operator would check is checked
// the way they would: status.json, the VM's files, the hypervisor's own
// answer on the VM's control socket, and /proc.

#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

// The driver under test is the parameter: "qemu", "cloud-hypervisor", or
// either "-as-nobody" (vmlet run --vmm-user nobody: the VMM never runs as
// root).
class VmletE2eTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  VmletE2eTest() : E2eTest(MakeVmmBackend(GetParam())) {}
};

INSTANTIATE_TEST_SUITE_P(EveryDriver, VmletE2eTest,
                         ::testing::Values("qemu", "cloud-hypervisor", "qemu-as-nobody",
                                           "cloud-hypervisor-as-nobody"),
                         BackendParamName);

// Given a manifest, vmlet boots it to Ready; Paused pauses it (the
// hypervisor agrees); Running resumes it; Stopped powers the guest off
// through the ACPI power button (the guest's power-down, no kill); Running
// boots it again; removing the file stops it and removes its state
// directory.
TEST_P(VmletE2eTest, LifecycleFromManifestToDeletion) {
  const api::VmKey key{"demo", "life"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  json status = Status(key);
  EXPECT_EQ(status.value("ip", ""), backend().ReadyIp());
  const pid_t pid = VmmPid(status);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pid});
  EXPECT_EQ(RunState(VmDir(key)), "running");
  EXPECT_GT(status.value("lastBootDurationSeconds", 0.0), 0.0);

  WriteManifest(key, Manifest(key, "  desiredState: Paused\n"));
  ASSERT_TRUE(WaitPhase(key, "Paused", seconds(30)));
  const pid_t paused_pid = VmmPid(Status(key));
  EXPECT_EQ(paused_pid, pid) << "pausing must not reboot";
  EXPECT_EQ(RunState(VmDir(key)), "paused");
  EXPECT_EQ(ConditionStatus(Status(key), "Paused"), "True");

  WriteManifest(key, Manifest(key, "  desiredState: Running\n"));
  ASSERT_TRUE(WaitPhase(key, "Ready", seconds(30)));
  EXPECT_EQ(RunState(VmDir(key)), "running");
  EXPECT_EQ(VmmPid(Status(key)), paused_pid) << "resuming must not reboot";

  WriteManifest(key, Manifest(key, "  desiredState: Stopped\n"));
  ASSERT_TRUE(WaitPhase(key, "Stopped", seconds(60)));
  EXPECT_TRUE(WaitFor(seconds(10), [&] { return !Alive(paused_pid); }));
  EXPECT_EQ(backend().MissingPowerOffEvidence(VmDir(key)), "")
      << "the guest must power itself off (ACPI), not be killed";
  EXPECT_EQ(Events(key).find("Killed"), std::string::npos);
  EXPECT_TRUE(VmmPids(VmDir(key)).empty());

  WriteManifest(key, Manifest(key, "  desiredState: Running\n"));
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  EXPECT_EQ(Status(key).value("restartCount", -1), 0) << "an operator's start is not a restart";

  fs::remove(ManifestPath(key));
  EXPECT_TRUE(WaitFor(seconds(60), [&] { return !fs::exists(VmDir(key)); }))
      << "state directory still there; status: " << Status(key).dump();
  EXPECT_TRUE(VmmPids(VmDir(key)).empty());
}

// Given a Ready VM whose VMM is SIGKILLed, vmlet sees the crash, boots it
// again (restartPolicy Always, after the first crash-loop delay) and counts
// the restart.
TEST_P(VmletE2eTest, SigkillOfTheVmmRebootsTheVmAndCountsARestart) {
  const api::VmKey key{"demo", "crashy"};
  const pid_t first = BootToReady(key);
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);

  ASSERT_TRUE(WaitFor(kBootTimeout + seconds(15), [&] {
    const json s = Status(key);
    return Phase(s) == "Ready" && VmmPid(s) != first;
  })) << Status(key).dump();
  const json status = Status(key);
  EXPECT_EQ(status.value("restartCount", -1), 1);
  EXPECT_NE(Events(key).find("killed by signal 9 (SIGKILL)"), std::string::npos);
  EXPECT_EQ(VmmPids(VmDir(key)).size(), 1u);
}

// Given three VMs booting, vmlet is SIGKILLed and started again: each VM
// keeps exactly its one VMM (same pid), none is booted again, all get Ready.
TEST_P(VmletE2eTest, VmletKilledWhileThreeVmsBootAdoptsThemWithoutRebooting) {
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
    EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pids[key.name]}) << key.name;
    EXPECT_EQ(VmmPid(Status(key)), pids[key.name]) << key.name;
    EXPECT_EQ(Status(key).value("restartCount", -1), 0) << key.name;
  }
}

// Given a record whose pid now belongs to an unrelated live process, that
// process is never signalled, and the VM is booted afresh.
TEST_P(VmletE2eTest, RecordedPidOwnedByAStrangerIsNeverSignalledAndTheVmBootsAfresh) {
  const api::VmKey key{"demo", "reused"};
  const pid_t vmm = BootToReady(key);
  ASSERT_GT(vmm, 0);
  StopVmlet();
  ASSERT_EQ(::kill(vmm, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(seconds(10), [&] { return !Alive(vmm); }));

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
    // Not the stale status of before the restart: a new VMM.
    return Phase(s) == "Ready" && VmmPid(s) != stranger.pid() && VmmPid(s) != vmm && VmmPid(s) != 0;
  })) << Status(key).dump();
  EXPECT_TRUE(Alive(stranger.pid())) << "the stranger was signalled";
  EXPECT_NE(Events(key).find("IdentityMismatch"), std::string::npos);
  EXPECT_EQ(VmmPids(VmDir(key)).size(), 1u);
}

// Given a corrupt record.json for a running VM, vmlet quarantines it and
// adopts the running VMM (found by its command line) instead of booting a
// second one.
TEST_P(VmletE2eTest, CorruptRecordIsQuarantinedAndTheRunningVmAdopted) {
  const api::VmKey key{"demo", "corrupt"};
  const pid_t vmm = BootToReady(key);
  ASSERT_GT(vmm, 0);
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
  EXPECT_EQ(VmmPid(Status(key)), vmm);
  EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{vmm});
}

// Given a Ready VM, an invalid edit to its manifest leaves it running
// untouched and shows the error in its status.
TEST_P(VmletE2eTest, InvalidEditKeepsTheVmRunningAndShowsTheError) {
  const api::VmKey key{"demo", "steady"};
  const pid_t vmm = BootToReady(key);
  ASSERT_GT(vmm, 0);

  WriteManifest(key, Manifest(key, "  cpus: many\n"));
  ASSERT_TRUE(WaitFor(seconds(20), [&] {
    return ConditionStatus(Status(key), "ManifestValid") == "False";
  })) << Status(key).dump();
  const json status = Status(key);
  EXPECT_EQ(Phase(status), "Ready");
  EXPECT_EQ(VmmPid(status), vmm);
  EXPECT_EQ(RunState(VmDir(key)), "running");
  EXPECT_NE(status.dump().find("spec.cpus"), std::string::npos) << status.dump();
  EXPECT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{vmm});
}

}  // namespace
}  // namespace vmlet::testing
