// The QEMU argv vmlet builds from a spec (docs/drivers.md), argument by argument.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "drivers/qemu/qemu_driver.h"
#include "tests/support/vm_specs.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

// prod/web-1 with /img/vmlinuz, 2 CPUs and 512 MiB.
api::VmSpec MinimalSpec() { return testing::MinimalVmSpec(); }

TEST(QemuCommandLineTest, MinimalSpecBootsTheKernelHeadlessWithEveryFileInTheVmDir) {
  EXPECT_THAT(QemuCommandLine(MinimalSpec(), "/s/vms/prod/web-1", "tcg", QemuOptions{}),
              ElementsAreArray<std::string>({"qemu-system-x86_64",
                                             "-name",
                                             "prod/web-1",
                                             "-accel",
                                             "tcg",
                                             "-m",
                                             "512",
                                             "-smp",
                                             "2",
                                             "-nodefaults",
                                             "-no-user-config",
                                             "-display",
                                             "none",
                                             "-no-reboot",
                                             "-sandbox",
                                             "on,obsolete=deny,elevateprivileges=deny,"
                                             "spawn=deny,resourcecontrol=deny",
                                             "-qmp",
                                             "unix:/s/vms/prod/web-1/qmp.sock,server=on,wait=off",
                                             "-serial",
                                             "file:/s/vms/prod/web-1/serial.log",
                                             "-kernel",
                                             "/img/vmlinuz",
                                             "-append",
                                             "console=ttyS0 panic=-1"}));
}

// --vmm-user: setpriv takes the user's ids after `ip netns exec` (which
// needs root) and before QEMU, which never runs as root.
TEST(QemuCommandLineTest, AVmmUserRunsQemuThroughSetprivInsideTheNetns) {
  api::VmSpec spec = MinimalSpec();
  spec.netns = "blue";
  QemuOptions options;
  options.vmm_user = VmmCredentials{"vmlet-vmm", 998, 997, {997, 993}};
  const std::vector<std::string> argv = QemuCommandLine(spec, "/s/vms/prod/web-1", "tcg", options);
  ASSERT_GE(argv.size(), 14u);
  EXPECT_THAT(std::vector<std::string>(argv.begin(), argv.begin() + 14),
              ElementsAre("ip", "netns", "exec", "blue", "setpriv", "--reuid=998", "--regid=997",
                          "--groups=997,993", "--inh-caps=-all", "--ambient-caps=-all",
                          "--bounding-set=-all", "--no-new-privs", "--", "qemu-system-x86_64"));
}

TEST(QemuCommandLineTest, KvmUsesTheHostCpu) {
  std::vector<std::string> argv =
      QemuCommandLine(MinimalSpec(), "/s/vms/prod/web-1", "kvm", QemuOptions{});
  ASSERT_GE(argv.size(), 7u);
  EXPECT_THAT(std::vector<std::string>(argv.begin() + 3, argv.begin() + 7),
              ElementsAre("-accel", "kvm", "-cpu", "host"));
}

TEST(QemuCommandLineTest, CommasInPathsAreDoubledAsQemuOptionSyntaxRequires) {
  api::VmSpec spec = MinimalSpec();
  spec.root_disk = "/disks/a,b.raw";
  std::vector<std::string> argv = QemuCommandLine(spec, "/s,t/vms/prod/web-1", "tcg", {});
  EXPECT_THAT(argv, ::testing::Contains("unix:/s,,t/vms/prod/web-1/qmp.sock,server=on,wait=off"));
  EXPECT_THAT(argv, ::testing::Contains("file:/s,,t/vms/prod/web-1/serial.log"));
  EXPECT_THAT(argv, ::testing::Contains("file=/disks/a,,b.raw,format=raw,if=virtio,id=root"));
}

TEST(QemuCommandLineTest, EveryOptionalDeviceIsMapped) {
  char dir[] = "/tmp/vmlet-qemu-cl-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string qcow = std::string(dir) + "/data.qcow2";
  std::ofstream(qcow, std::ios::binary) << "QFI\xfb" << std::string(60, '\0');

  api::VmSpec spec = MinimalSpec();
  spec.initramfs = "/img/initrd";
  spec.cmdline = "console=ttyS0 vmlet.ip=10.1.0.2/24";
  spec.root_disk = std::string(dir) + "/missing-root.raw";
  spec.data_disk = qcow;
  spec.seed_iso = "/img/seed.iso";
  spec.networks = {{"tap-a", "52:54:00:00:00:0a"}, {"tap-b", "52:54:00:00:00:0b"}};
  spec.vsock = true;
  spec.netns = "blue";
  QemuOptions options;
  options.qemu_binary = "/opt/qemu/bin/qemu-system-x86_64";
  std::vector<std::string> argv = QemuCommandLine(spec, "/s/vms/prod/web-1", "tcg", options);
  fs::remove_all(dir);

  EXPECT_THAT(std::vector<std::string>(argv.begin(), argv.begin() + 5),
              ElementsAre("ip", "netns", "exec", "blue", "/opt/qemu/bin/qemu-system-x86_64"));
  auto after = [&](const std::string& flag, size_t nth = 0) {
    for (size_t i = 0; i + 1 < argv.size(); ++i) {
      if (argv[i] == flag && nth-- == 0) return argv[i + 1];
    }
    return std::string("<missing>");
  };
  EXPECT_EQ(after("-initrd"), "/img/initrd");
  EXPECT_EQ(after("-append"), "console=ttyS0 vmlet.ip=10.1.0.2/24");
  EXPECT_EQ(after("-drive", 0),
            "file=" + std::string(dir) + "/missing-root.raw,format=raw,if=virtio,id=root");
  EXPECT_EQ(after("-drive", 1), "file=" + qcow + ",format=qcow2,if=virtio,id=data");
  EXPECT_EQ(after("-drive", 2), "file=/img/seed.iso,format=raw,if=virtio,id=seed,readonly=on");
  EXPECT_EQ(after("-netdev", 0), "tap,id=net0,ifname=tap-a,script=no,downscript=no");
  EXPECT_EQ(after("-device", 0), "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:0a");
  EXPECT_EQ(after("-netdev", 1), "tap,id=net1,ifname=tap-b,script=no,downscript=no");
  EXPECT_EQ(after("-device", 1), "virtio-net-pci,netdev=net1,mac=52:54:00:00:00:0b");
  EXPECT_EQ(after("-device", 2),
            "vhost-vsock-pci,guest-cid=" + std::to_string(VsockCid("/s/vms/prod/web-1")));
}

TEST(QemuCommandLineTest, SharedDirsShareGuestMemoryAndGetAVhostUserFsDeviceEach) {
  api::VmSpec spec = MinimalSpec();
  spec.shared_dirs = {{"/srv/src", "src", true}, {"/srv/cache", "cache", false}};
  std::vector<std::string> argv = QemuCommandLine(spec, "/s/vms/prod/web-1", "tcg", {});
  const std::vector<std::string> tail(argv.end() - 12, argv.end());
  EXPECT_THAT(tail, ElementsAreArray<std::string>(
                        {"-object", "memory-backend-memfd,id=mem,size=512M,share=on", "-numa",
                         "node,memdev=mem", "-chardev",
                         "socket,id=fs0,path=/s/vms/prod/web-1/virtiofs-src.sock", "-device",
                         "vhost-user-fs-pci,chardev=fs0,tag=src", "-chardev",
                         "socket,id=fs1,path=/s/vms/prod/web-1/virtiofs-cache.sock", "-device",
                         "vhost-user-fs-pci,chardev=fs1,tag=cache"}));
}

TEST(QemuCommandLineTest, VsockCidIsStableAndNeverReserved) {
  EXPECT_EQ(VsockCid("/s/vms/prod/web-1"), VsockCid("/s/vms/prod/web-1"));
  EXPECT_NE(VsockCid("/s/vms/prod/web-1"), VsockCid("/s/vms/prod/web-2"));
  for (const char* dir : {"", "/", "/a", "/var/lib/vmlet/vms/default/x"}) {
    EXPECT_GE(VsockCid(dir), 3u) << dir;
    EXPECT_LT(VsockCid(dir), 0xFFFFFFFFu) << dir;
  }
}

}  // namespace
}  // namespace vmlet::drivers
