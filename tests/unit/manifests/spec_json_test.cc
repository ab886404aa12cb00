#include "manifests/spec_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/vm_spec.h"
#include "manifests/manifest_parser.h"
#include "tests/support/vm_specs.h"

namespace vmlet::manifests {
namespace {

using nlohmann::json;
using ::testing::MatchesRegex;
using ::testing::SizeIs;
using namespace std::chrono_literals;

// Only the required fields; everything else at its default.
api::VmSpec MinimalSpec() {
  api::VmSpec spec = testing::MinimalVmSpec({"prod", "web-1"}, "/boot/vmlinuz", 1, 512);
  spec.driver = "qemu";
  return spec;
}

// Every field set, none to its default.
api::VmSpec FullSpec() {
  api::VmSpec spec = MinimalSpec();
  spec.labels = {{"app", "web"}};
  spec.desired_state = api::DesiredState::kPaused;
  spec.restart_policy = api::RestartPolicy::kNever;
  spec.node_name = "host-a";
  spec.readiness_timeout = 120s;
  spec.stop_grace_period = 45s;
  spec.initramfs = "/boot/initrd";
  spec.root_disk = "/disks/web-1.raw";
  spec.data_disk = "/disks/web-1-data.raw";
  spec.seed_iso = "/disks/web-1-seed.iso";
  spec.cpus = 2;
  spec.memory_mb = 768;
  spec.networks = {{"tap-web1", "52:54:00:12:34:56"}};
  spec.shared_dirs = {{"/srv/web", "web", true}};
  spec.cmdline = "console=ttyS0 quiet";
  spec.netns = "blue";
  spec.vsock = true;
  spec.machine_id = "AAECAw==";
  spec.efi_variable_store = "/efi/web-1.fd";
  spec.rosetta = true;
  spec.serial_log = "/var/lib/vmlet/vms/prod/web-1/serial.log";
  return spec;
}

TEST(SpecJsonTest, FullSpecHasEveryFieldInManifestShape) {
  EXPECT_EQ(SpecToJson(FullSpec()), json::parse(R"({
    "metadata": {"name": "web-1", "namespace": "prod", "labels": {"app": "web"}},
    "spec": {
      "desiredState": "Paused",
      "restartPolicy": "Never",
      "driver": "qemu",
      "nodeName": "host-a",
      "kernel": "/boot/vmlinuz",
      "initramfs": "/boot/initrd",
      "cmdline": "console=ttyS0 quiet",
      "rootDisk": "/disks/web-1.raw",
      "dataDisk": "/disks/web-1-data.raw",
      "seedIso": "/disks/web-1-seed.iso",
      "cpus": 2,
      "memoryMb": 768,
      "networks": [{"tap": "tap-web1", "mac": "52:54:00:12:34:56"}],
      "sharedDirs": [{"hostPath": "/srv/web", "tag": "web", "readOnly": true}],
      "netns": "blue",
      "vsock": true,
      "machineId": "AAECAw==",
      "efiVariableStore": "/efi/web-1.fd",
      "rosetta": true,
      "readiness": {"timeoutSeconds": 120},
      "stopGracePeriodSeconds": 45
    }
  })"));
}

TEST(SpecJsonTest, UnsetOptionalFieldsAreOmitted) {
  api::VmSpec spec = MinimalSpec();
  spec.networks = {{"tap0", std::nullopt}};

  EXPECT_EQ(SpecToJson(spec), json::parse(R"({
    "metadata": {"name": "web-1", "namespace": "prod"},
    "spec": {
      "desiredState": "Running",
      "restartPolicy": "Always",
      "driver": "qemu",
      "kernel": "/boot/vmlinuz",
      "cpus": 1,
      "memoryMb": 512,
      "networks": [{"tap": "tap0"}],
      "sharedDirs": [],
      "vsock": false,
      "rosetta": false,
      "readiness": {"timeoutSeconds": 300},
      "stopGracePeriodSeconds": 30
    }
  })"));
}

TEST(SpecJsonTest, JsonWithApiVersionAndKindParsesBackToTheSameSpec) {
  api::VmSpec spec = FullSpec();
  spec.rosetta = false;     // no Linux driver accepts it
  spec.serial_log.clear();  // not a manifest field
  json manifest = SpecToJson(spec);
  manifest["apiVersion"] = "vmlet.dev/v1alpha1";
  manifest["kind"] = "VirtualMachine";

  ParseResult result = ParseManifest("web.json", manifest.dump(2), ParseOptions{});

  ASSERT_THAT(result.errors, SizeIs(0)) << result.errors[0];
  ASSERT_THAT(result.vms, SizeIs(1));
  EXPECT_TRUE(result.vms[0].spec == spec) << SpecToJson(result.vms[0].spec).dump(2);
}

TEST(SpecJsonTest, BootHashIsSixteenLowercaseHexDigits) {
  EXPECT_THAT(BootHash(MinimalSpec()), MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(BootHash(FullSpec()), MatchesRegex("[0-9a-f]{16}"));
}

TEST(SpecJsonTest, BootHashOfAMinimalSpecNeverChanges) {
  // A different hash after an upgrade would reboot every guest. This is
  // printf '%s' '{"cpus":1,"driver":"qemu","kernel":"/boot/vmlinuz",
  // "memoryMb":512,"networks":[],"rosetta":false,"sharedDirs":[],"vsock":false}'
  // | sha256sum, cut to 16 digits.
  EXPECT_EQ(BootHash(MinimalSpec()), "ae6750ddbbeae4aa");
}

struct SpecChange {
  std::string name;
  std::function<void(api::VmSpec&)> apply;
};

std::string ChangeName(const ::testing::TestParamInfo<SpecChange>& info) { return info.param.name; }

class BootHashIgnoresTest : public ::testing::TestWithParam<SpecChange> {};

TEST_P(BootHashIgnoresTest, ChangeThatOnlyAffectsManagementKeepsTheHash) {
  api::VmSpec changed = FullSpec();
  GetParam().apply(changed);

  EXPECT_FALSE(changed == FullSpec());
  EXPECT_EQ(BootHash(changed), BootHash(FullSpec()));
}

INSTANTIATE_TEST_SUITE_P(
    SpecJson, BootHashIgnoresTest,
    ::testing::Values(
        SpecChange{"DesiredState",
                   [](api::VmSpec& s) { s.desired_state = api::DesiredState::kStopped; }},
        SpecChange{"RestartPolicy",
                   [](api::VmSpec& s) { s.restart_policy = api::RestartPolicy::kOnFailure; }},
        SpecChange{"NodeName", [](api::VmSpec& s) { s.node_name = "host-b"; }},
        SpecChange{"NodeNameUnset", [](api::VmSpec& s) { s.node_name.reset(); }},
        SpecChange{"ReadinessTimeout", [](api::VmSpec& s) { s.readiness_timeout = 1s; }},
        SpecChange{"StopGracePeriod", [](api::VmSpec& s) { s.stop_grace_period = 0s; }},
        SpecChange{"Labels", [](api::VmSpec& s) { s.labels["tier"] = "frontend"; }},
        SpecChange{"SerialLog", [](api::VmSpec& s) { s.serial_log = "/elsewhere/serial.log"; }}),
    ChangeName);

class BootHashCoversTest : public ::testing::TestWithParam<SpecChange> {};

TEST_P(BootHashCoversTest, ChangeToWhatTheVmmIsBootedWithChangesTheHash) {
  api::VmSpec changed = FullSpec();
  GetParam().apply(changed);

  EXPECT_NE(BootHash(changed), BootHash(FullSpec()));
}

INSTANTIATE_TEST_SUITE_P(
    SpecJson, BootHashCoversTest,
    ::testing::Values(
        SpecChange{"Driver", [](api::VmSpec& s) { s.driver = "cloud-hypervisor"; }},
        SpecChange{"Kernel", [](api::VmSpec& s) { s.kernel = "/boot/vmlinuz-6.9"; }},
        SpecChange{"Initramfs", [](api::VmSpec& s) { s.initramfs.reset(); }},
        SpecChange{"Cmdline", [](api::VmSpec& s) { s.cmdline = "console=ttyS0"; }},
        SpecChange{"RootDisk", [](api::VmSpec& s) { s.root_disk = "/disks/other.raw"; }},
        SpecChange{"DataDisk", [](api::VmSpec& s) { s.data_disk.reset(); }},
        SpecChange{"SeedIso", [](api::VmSpec& s) { s.seed_iso = "/disks/other.iso"; }},
        SpecChange{"Cpus", [](api::VmSpec& s) { s.cpus = 4; }},
        SpecChange{"Memory", [](api::VmSpec& s) { s.memory_mb = 1024; }},
        SpecChange{"NetworkAdded",
                   [](api::VmSpec& s) {
                     s.networks.push_back({"tap1", "52:54:00:00:00:02"});
                   }},
        SpecChange{"NetworkMac", [](api::VmSpec& s) { s.networks[0].mac = "52:54:00:00:00:03"; }},
        SpecChange{"SharedDirReadOnly", [](api::VmSpec& s) { s.shared_dirs[0].read_only = false; }},
        SpecChange{"SharedDirRemoved", [](api::VmSpec& s) { s.shared_dirs.clear(); }},
        SpecChange{"Netns", [](api::VmSpec& s) { s.netns = "red"; }},
        SpecChange{"Vsock", [](api::VmSpec& s) { s.vsock = false; }},
        SpecChange{"MachineId", [](api::VmSpec& s) { s.machine_id = "BBECAw=="; }},
        SpecChange{"EfiVariableStore", [](api::VmSpec& s) { s.efi_variable_store.reset(); }},
        SpecChange{"Rosetta", [](api::VmSpec& s) { s.rosetta = false; }}),
    ChangeName);

TEST(SpecJsonTest, Sha256HexMatchesTheKnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

}  // namespace
}  // namespace vmlet::manifests
