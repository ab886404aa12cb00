#include "drivers/boot_refusal.h"

#include <gtest/gtest.h>

#include <sstream>

#include "drivers/vm_driver.h"

namespace vmlet::drivers {
namespace {

TEST(BootRefusalTest, ReasonsAreNamedAsStatusConditionsAndEventsShowThem) {
  EXPECT_EQ(ReasonName(BootRefusal::Reason::kDiskLocked), "DiskLocked");
  EXPECT_EQ(ReasonName(BootRefusal::Reason::kImageNotReadable), "ImageNotReadable");
  std::ostringstream shown;
  shown << BootRefusal{BootRefusal::Reason::kDiskLocked,
                       "disk image /a is locked by another process"};
  EXPECT_EQ(shown.str(), "DiskLocked: disk image /a is locked by another process");
}

TEST(BootRefusalTest, ABootResultIsEitherAHandleOrARefusal) {
  const VmmHandle handle{"qemu", {42, 7}, "boot-id", "/s/vms/ns/a", "/s/vms/ns/a/qmp.sock"};
  const BootResult launched = BootResult::Launched(handle);
  ASSERT_NE(launched.handle(), nullptr);
  EXPECT_EQ(*launched.handle(), handle);
  EXPECT_EQ(launched.refusal(), nullptr);

  const BootRefusal locked{BootRefusal::Reason::kDiskLocked, "disk image /a is locked"};
  const BootResult refused = BootResult::Refused(locked);
  EXPECT_EQ(refused.handle(), nullptr);
  ASSERT_NE(refused.refusal(), nullptr);
  EXPECT_EQ(*refused.refusal(), locked);
}

TEST(BootRefusalTest, AVmmThatEndedForARefusalLeavesTheVmStarting) {
  const VmmExit crashed = api::VmState::Failed("the VMM crashed");
  EXPECT_EQ(crashed.refusal(), nullptr);
  EXPECT_EQ(crashed.state(), api::VmState::Failed("the VMM crashed"));

  const BootRefusal locked{BootRefusal::Reason::kDiskLocked, "disk image /a is locked"};
  const VmmExit refused = locked;
  ASSERT_NE(refused.refusal(), nullptr);
  EXPECT_EQ(*refused.refusal(), locked);
  EXPECT_EQ(refused.state(), api::VmState::Starting());
}

}  // namespace
}  // namespace vmlet::drivers
