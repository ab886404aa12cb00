#include "drivers/host/disk_lock.h"

#include <gtest/gtest.h>

namespace vmlet::drivers {
namespace {

// What qemu-system-x86_64 7.2 printed on this machine, starting a second VM
// on an image a first one had open.
constexpr char kQemuLockRefusal[] =
    "qemu-system-x86_64: -drive file=/tmp/lk.img,format=raw,if=virtio: Failed to get \"write\" "
    "lock\n"
    "Is another process using the image [/tmp/lk.img]?\n";

TEST(DiskLockTest, QemusWriteLockRefusalNamesTheImage) {
  const std::string log =
      std::string("qemu-system-x86_64: warning: something else\n") + kQemuLockRefusal;
  std::optional<std::string> found = FindDiskLockFailure(log);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(*found,
            "disk image /tmp/lk.img is locked by another process (qemu-system-x86_64: -drive "
            "file=/tmp/lk.img,format=raw,if=virtio: Failed to get \"write\" lock)");
}

TEST(DiskLockTest, QemusOtherLockRefusalsCountWithoutTheImageLine) {
  std::optional<std::string> found = FindDiskLockFailure(
      "qemu-system-x86_64: -drive file=/srv/a.qcow2: Failed to get \"consistent read\" lock");
  ASSERT_TRUE(found.has_value());
  EXPECT_TRUE(found->starts_with("a disk image is locked by another process (")) << *found;
  EXPECT_TRUE(FindDiskLockFailure("qemu: -drive file=/a: Failed to get shared \"write\" lock\r\n")
                  .has_value());
}

TEST(DiskLockTest, CloudHypervisorsDiskLockErrorsCount) {
  // vm.boot's error body, one cause per line as the client joins them.
  EXPECT_TRUE(FindDiskLockFailure("Error booting VM\nError creating device manager\n"
                                  "Disk lock error: the disk image /srv/a.raw is already locked")
                  .has_value());
  EXPECT_TRUE(FindDiskLockFailure("Failed to lock the disk image /srv/a.raw").has_value());
}

TEST(DiskLockTest, OtherFailuresAreNotDiskLocks) {
  EXPECT_FALSE(FindDiskLockFailure("").has_value());
  EXPECT_FALSE(FindDiskLockFailure("qemu-system-x86_64: -drive file=/srv/a.img: Could not open "
                                   "'/srv/a.img': No such file or directory")
                   .has_value());
  // Cloud Hypervisor's sandbox, not a disk.
  EXPECT_FALSE(
      FindDiskLockFailure("Landlock error: failed to lock down the disk image path").has_value());
  // A lock that is not about a disk.
  EXPECT_FALSE(FindDiskLockFailure("Error: the API socket is already locked").has_value());
}

}  // namespace
}  // namespace vmlet::drivers
