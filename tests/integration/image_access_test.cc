#include "drivers/host/image_access.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "drivers/boot_refusal.h"
#include "tests/support/temp_dir.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;

class ImageAccessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    kernel_ = dir_ + "/vmlinuz";
    disk_ = dir_ + "/data.raw";
    std::ofstream(kernel_) << "kernel";
    std::ofstream(disk_) << "disk";
  }

  api::VmSpec Spec() const {
    api::VmSpec spec;
    spec.kernel = kernel_;
    spec.data_disk = disk_;
    return spec;
  }

  // `nobody`, the one unprivileged user every Debian system has.
  static std::optional<VmmCredentials> Nobody() {
    api::StatusOr<VmmCredentials> creds = LookupVmmCredentials("nobody");
    if (!creds.ok()) return std::nullopt;
    return *creds;
  }

  const testing::TempDir temp_dir_{"image-access"};
  const std::string dir_ = temp_dir_.path();
  std::string kernel_, disk_;
};

TEST_F(ImageAccessTest, ReadableImagesPass) {
  EXPECT_EQ(CheckImagesReadable(Spec(), std::nullopt), std::nullopt);
}

TEST_F(ImageAccessTest, AMissingImageIsImageNotReadableNamingItsField) {
  api::VmSpec spec = Spec();
  spec.initramfs = dir_ + "/initrd.gz";
  const std::optional<BootRefusal> refusal = CheckImagesReadable(spec, std::nullopt);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->reason, BootRefusal::Reason::kImageNotReadable);
  EXPECT_EQ(ReasonName(refusal->reason), "ImageNotReadable");
  EXPECT_EQ(refusal->detail, "spec.initramfs " + dir_ +
                                 "/initrd.gz: vmlet cannot read it (No such file or directory)");
}

TEST_F(ImageAccessTest, AnotherUserIsCheckedWithItsOwnIds) {
  if (::geteuid() != 0) GTEST_SKIP() << "taking another user's ids needs root";
  const std::optional<VmmCredentials> nobody = Nobody();
  ASSERT_TRUE(nobody.has_value()) << "no user nobody";
  ASSERT_EQ(::chmod(kernel_.c_str(), 0644), 0);
  ASSERT_EQ(::chmod(disk_.c_str(), 0644), 0);
  // Readable by all, writable by root only: nobody may boot the kernel but
  // not write the data disk.
  EXPECT_EQ(CheckImagesReadable(Spec(), nobody),
            (BootRefusal{BootRefusal::Reason::kImageNotReadable,
                         "spec.dataDisk " + disk_ +
                             ": user nobody cannot read and write it (Permission denied)"}));
  // Root itself may.
  EXPECT_EQ(CheckImagesReadable(Spec(), std::nullopt), std::nullopt);

  ASSERT_EQ(::chown(disk_.c_str(), nobody->uid, nobody->gid), 0);
  EXPECT_EQ(CheckImagesReadable(Spec(), nobody), std::nullopt);

  // A kernel only root can read.
  ASSERT_EQ(::chmod(kernel_.c_str(), 0600), 0);
  EXPECT_EQ(
      CheckImagesReadable(Spec(), nobody),
      (BootRefusal{BootRefusal::Reason::kImageNotReadable,
                   "spec.kernel " + kernel_ + ": user nobody cannot read it (Permission denied)"}));
  // A directory on the way it cannot enter.
  ASSERT_EQ(::chmod(kernel_.c_str(), 0644), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  const std::optional<BootRefusal> refusal = CheckImagesReadable(Spec(), nobody);
  ASSERT_TRUE(refusal.has_value());
  EXPECT_EQ(refusal->reason, BootRefusal::Reason::kImageNotReadable);
}

TEST_F(ImageAccessTest, AnUnknownUserIsNotFound) {
  EXPECT_TRUE(LookupVmmCredentials("vmlet-no-such-user").status().IsNotFound());
}

}  // namespace
}  // namespace vmlet::drivers
