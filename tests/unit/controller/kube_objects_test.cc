#include "controller/kube_objects.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace vmlet::controller {
namespace {

using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(FormatAgeTest, ReadsAsKubectlsHumanDuration) {
  EXPECT_EQ(FormatAge(seconds(0)), "0s");
  EXPECT_EQ(FormatAge(seconds(59)), "59s");
  EXPECT_EQ(FormatAge(seconds(119)), "119s");
  EXPECT_EQ(FormatAge(seconds(120)), "2m");
  EXPECT_EQ(FormatAge(seconds(125)), "2m5s");
  EXPECT_EQ(FormatAge(minutes(10)), "10m");
  EXPECT_EQ(FormatAge(minutes(179)), "179m");
  EXPECT_EQ(FormatAge(hours(3)), "3h");
  EXPECT_EQ(FormatAge(hours(3) + minutes(5)), "3h5m");
  EXPECT_EQ(FormatAge(hours(8) + minutes(5)), "8h");
  EXPECT_EQ(FormatAge(hours(47)), "47h");
  EXPECT_EQ(FormatAge(hours(48)), "2d");
  EXPECT_EQ(FormatAge(hours(50)), "2d2h");
  EXPECT_EQ(FormatAge(hours(24 * 8)), "8d");
  EXPECT_EQ(FormatAge(hours(24 * 400)), "400d");
  EXPECT_EQ(FormatAge(hours(24 * 730)), "2y");
  EXPECT_EQ(FormatAge(hours(24 * 800)), "2y70d");
  EXPECT_EQ(FormatAge(hours(24 * 365 * 9)), "9y");
}

TEST(FormatAgeTest, ASecondIntoTheFutureIsNowAndMoreIsInvalid) {
  EXPECT_EQ(FormatAge(seconds(-1)), "0s");
  EXPECT_EQ(FormatAge(seconds(-2)), "<invalid>");
}

TEST(FormatKubeTimeTest, IsUtcInWholeSeconds) {
  const WallTime t = WallTime(seconds(1795824000)) + std::chrono::milliseconds(1999);
  EXPECT_EQ(FormatKubeTime(t), "2026-11-28T00:00:01Z");
}

TEST(VmUidTest, IsUuidShapedAndStablePerNamespaceAndName) {
  const std::string uid = VmUid({"prod", "web-1"});
  ASSERT_EQ(uid.size(), 36u);
  EXPECT_EQ(uid[8], '-');
  EXPECT_EQ(uid[13], '-');
  EXPECT_EQ(uid[18], '-');
  EXPECT_EQ(uid[23], '-');
  EXPECT_EQ(VmUid({"prod", "web-1"}), uid);
  EXPECT_NE(VmUid({"prod", "web-2"}), uid);
  EXPECT_NE(VmUid({"dev", "web-1"}), uid);
}

}  // namespace
}  // namespace vmlet::controller
