// What the cloud-hypervisor driver asks of CH for a spec: the command line
// it spawns, the VmConfig it sends with vm.create, and the specs it refuses.
// (That the VmConfig passes CH's OpenAPI schema is checked by the
// integration test, which links the fake's validator.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "drivers/cloud_hypervisor/ch_vm_config.h"
#include "drivers/cloud_hypervisor/cloud_hypervisor_driver.h"
#include "drivers/host/linux_proc_fs.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/real_clock.h"
#include "drivers/qemu/qemu_driver.h"
#include "tests/support/vm_specs.h"

namespace vmlet::drivers {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr char kVmDir[] = "/s/vms/prod/web-1";

// prod/web-1 with /img/vmlinuz, 2 CPUs and 512 MiB.
api::VmSpec MinimalSpec() { return testing::MinimalVmSpec(); }

TEST(ChVmConfigTest, MinimalSpecBootsTheKernelWithTheSerialConsoleInTheVmDir) {
  EXPECT_EQ(ChVmConfig(MinimalSpec(), kVmDir), json::parse(R"({
              "payload": {"kernel": "/img/vmlinuz", "cmdline": "console=ttyS0 panic=-1"},
              "cpus": {"boot_vcpus": 2, "max_vcpus": 2},
              "memory": {"size": 536870912, "shared": false},
              "serial": {"mode": "File", "file": "/s/vms/prod/web-1/serial.log"},
              "console": {"mode": "Off"}
            })"));
}

TEST(ChVmConfigTest, EveryOptionalDeviceIsMapped) {
  api::VmSpec spec = MinimalSpec();
  spec.initramfs = "/img/initrd";
  spec.cmdline = "console=ttyS0 quiet";
  spec.root_disk = "/disks/root.raw";
  spec.data_disk = "/disks/data.qcow2";
  spec.seed_iso = "/disks/seed.iso";
  spec.networks = {{"tap-web1", "52:54:00:12:34:56"}, {"tap-web1b", std::nullopt}};
  spec.vsock = true;
  spec.memory_mb = 4096;

  const json config = ChVmConfig(spec, kVmDir);
  EXPECT_EQ(config["payload"], json::parse(R"({"kernel": "/img/vmlinuz",
      "initramfs": "/img/initrd", "cmdline": "console=ttyS0 quiet"})"));
  EXPECT_EQ(config["memory"], json::parse(R"({"size": 4294967296, "shared": false})"));
  EXPECT_EQ(config["disks"], json::parse(R"([
      {"path": "/disks/root.raw", "id": "root"},
      {"path": "/disks/data.qcow2", "id": "data"},
      {"path": "/disks/seed.iso", "readonly": true, "id": "seed"}])"));
  EXPECT_EQ(config["net"], json::parse(R"([
      {"tap": "tap-web1", "mac": "52:54:00:12:34:56"}, {"tap": "tap-web1b"}])"));
  EXPECT_EQ(config["vsock"],
            json({{"cid", VsockCid(kVmDir)}, {"socket", "/s/vms/prod/web-1/vsock.sock"}}));
  EXPECT_FALSE(config.contains("fs"));
}

TEST(ChVmConfigTest, SharedDirsBecomeVirtioFsDevicesOnSharedMemory) {
  api::VmSpec spec = MinimalSpec();
  spec.shared_dirs = {{"/srv/web", "web", true}, {"/srv/logs", "logs", false}};
  const json config = ChVmConfig(spec, kVmDir);
  EXPECT_EQ(config["memory"]["shared"], true);
  EXPECT_EQ(config["fs"], json::parse(R"([
      {"tag": "web", "socket": "/s/vms/prod/web-1/virtiofs-web.sock",
       "num_queues": 1, "queue_size": 512},
      {"tag": "logs", "socket": "/s/vms/prod/web-1/virtiofs-logs.sock",
       "num_queues": 1, "queue_size": 512}])"));
}

// --vmm-user: CH confines itself with Landlock to its config's files and
// the VM's directory.
TEST(ChVmConfigTest, LandlockAllowsTheVmDirBesidesTheConfigsOwnFiles) {
  const json config = ChVmConfig(MinimalSpec(), kVmDir, /*landlock=*/true);
  EXPECT_EQ(config["landlock_enable"], true);
  EXPECT_EQ(config["landlock_rules"],
            json::parse(R"([{"path": ")" + std::string(kVmDir) + R"(", "access": "rw"}])"));
  EXPECT_FALSE(ChVmConfig(MinimalSpec(), kVmDir).contains("landlock_enable"));
}

// --vmm-user: setpriv takes the user's ids after `ip netns exec`, before CH.
TEST(ChCommandLineTest, AVmmUserRunsChThroughSetprivInsideTheNetns) {
  api::VmSpec spec = MinimalSpec();
  spec.netns = "blue";
  CloudHypervisorOptions options;
  options.vmm_user = VmmCredentials{"vmlet-vmm", 998, 997, {}};
  const std::vector<std::string> argv = ChCommandLine(spec, kVmDir, options);
  ASSERT_GE(argv.size(), 14u);
  EXPECT_EQ(std::vector<std::string>(argv.begin(), argv.begin() + 14),
            (std::vector<std::string>{"ip", "netns", "exec", "blue", "setpriv", "--reuid=998",
                                      "--regid=997", "--clear-groups", "--inh-caps=-all",
                                      "--ambient-caps=-all", "--bounding-set=-all",
                                      "--no-new-privs", "--", "cloud-hypervisor"}));
}

TEST(ChVmConfigTest, TheSpecsSerialLogWinsOverTheDefaultPath) {
  api::VmSpec spec = MinimalSpec();
  spec.serial_log = "/elsewhere/serial.log";
  EXPECT_EQ(ChVmConfig(spec, kVmDir)["serial"],
            json({{"mode", "File"}, {"file", "/elsewhere/serial.log"}}));
}

TEST(ChVmConfigTest, VsockCidIsTheOneQemuGivesTheSameVmDir) {
  api::VmSpec spec = MinimalSpec();
  spec.vsock = true;
  const json config = ChVmConfig(spec, kVmDir);
  EXPECT_EQ(config["vsock"]["cid"].get<uint32_t>(), VsockCid(kVmDir));
  EXPECT_GE(config["vsock"]["cid"].get<uint32_t>(), 3u);
}

TEST(ChCommandLineTest, StartsTheVmmWithOnlyItsApiSocketAndEventMonitor) {
  EXPECT_THAT(ChCommandLine(MinimalSpec(), kVmDir, CloudHypervisorOptions{}),
              ElementsAreArray<std::string>({"cloud-hypervisor", "--api-socket",
                                             "path=/s/vms/prod/web-1/ch.sock", "--event-monitor",
                                             "path=/s/vms/prod/web-1/events.json"}));
}

TEST(ChCommandLineTest, NetnsPrefixesIpNetnsExecAndExtraArgsComeLast) {
  api::VmSpec spec = MinimalSpec();
  spec.netns = "blue";
  CloudHypervisorOptions options;
  options.cloud_hypervisor_binary = "/opt/ch/cloud-hypervisor";
  options.ip_binary = "/sbin/ip";
  options.extra_args = {"-v", "--seccomp", "log"};
  EXPECT_THAT(ChCommandLine(spec, kVmDir, options),
              ElementsAreArray<std::string>(
                  {"/sbin/ip", "netns", "exec", "blue", "/opt/ch/cloud-hypervisor", "--api-socket",
                   "path=/s/vms/prod/web-1/ch.sock", "--event-monitor",
                   "path=/s/vms/prod/web-1/events.json", "-v", "--seccomp", "log"}));
}

class CloudHypervisorCheckSpecTest : public ::testing::Test {
 protected:
  RealClock clock_;
  LinuxProcFs proc_fs_;
  PosixProcessLauncher launcher_;
  CloudHypervisorDriver driver_{clock_, proc_fs_, launcher_, CloudHypervisorOptions{}};
};

TEST_F(CloudHypervisorCheckSpecTest, AcceptsEverythingCloudHypervisorCanRun) {
  api::VmSpec spec = MinimalSpec();
  spec.root_disk = "/disks/root.raw";
  spec.networks = {{"tap0", "52:54:00:12:34:56"}};
  spec.netns = "blue";
  spec.vsock = true;
  EXPECT_TRUE(driver_.CheckSpec(spec).empty());
  EXPECT_EQ(driver_.name(), "cloud-hypervisor");
}

TEST_F(CloudHypervisorCheckSpecTest, SharedDirsNeedVirtiofsd) {
  api::VmSpec spec = MinimalSpec();
  spec.shared_dirs = {{"/srv/web", "web", true}};
  CloudHypervisorOptions without;
  without.virtiofsd_binary = "/nonexistent/virtiofsd";
  CloudHypervisorDriver driver(clock_, proc_fs_, launcher_, without);
  const std::vector<api::FieldError> errors = driver.CheckSpec(spec);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].field, "spec.sharedDirs");
  EXPECT_EQ(errors[0].reason,
            "virtiofsd is not at /nonexistent/virtiofsd (Debian: package qemu-system-common)");

  CloudHypervisorOptions with;
  with.virtiofsd_binary = "/bin/true";  // any executable will do for the check
  EXPECT_TRUE(CloudHypervisorDriver(clock_, proc_fs_, launcher_, with).CheckSpec(spec).empty());
}

TEST_F(CloudHypervisorCheckSpecTest, RejectsWhatBelongsToOtherDrivers) {
  api::VmSpec spec = MinimalSpec();
  spec.rosetta = true;
  spec.machine_id = "AAAA";
  spec.efi_variable_store = "/vars.fd";
  std::vector<std::string> fields;
  for (const api::FieldError& e : driver_.CheckSpec(spec)) fields.push_back(e.field);
  EXPECT_THAT(fields, ElementsAre("spec.rosetta", "spec.efiVariableStore", "spec.machineId"));
}

}  // namespace
}  // namespace vmlet::drivers
