#include "controller/rfc3339_time.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace std::chrono_literals;

using state_samples::kT0;  // 2026-11-28T00:00:00Z

// Times.

TEST(TimeJsonTest, FormatTimeWritesUtcWithMillisecondsDroppingTheRest) {
  EXPECT_EQ(FormatTime(kT0), "2026-11-28T00:00:00.000Z");
  EXPECT_EQ(FormatTime(kT0 + 3h + 4min + 5s + 123ms + 999999ns), "2026-11-28T03:04:05.123Z");
  EXPECT_EQ(FormatTime(WallTime{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTime(WallTime{} - 1ms), "1969-12-31T23:59:59.999Z");
}

TEST(TimeJsonTest, ParseTimeReadsWhatFormatTimeWritesExactly) {
  for (WallTime t : {kT0, kT0 + 3h + 4min + 5s + 123ms, kT0 + 1ms, WallTime{},
                     // 2028-02-29T23:59:59.999Z, a leap day.
                     WallTime(std::chrono::seconds(1835481599)) + 999ms}) {
    const std::string text = FormatTime(t);
    api::StatusOr<WallTime> parsed = ParseTime(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, t) << text;
    EXPECT_EQ(FormatTime(*parsed), text);
  }
  EXPECT_EQ(FormatTime(WallTime(std::chrono::seconds(1835481599)) + 999ms),
            "2028-02-29T23:59:59.999Z");
}

TEST(TimeJsonTest, ParseTimeAcceptsOtherRfc3339Forms) {
  const WallTime t = kT0 + 3h + 4min + 5s;
  EXPECT_EQ(*ParseTime("2026-11-28T03:04:05Z"), t);
  EXPECT_EQ(*ParseTime("2026-11-28t03:04:05z"), t);
  EXPECT_EQ(*ParseTime("2026-11-28T03:04:05.5Z"), t + 500ms);
  EXPECT_EQ(*ParseTime("2026-11-28T03:04:05.123456789Z"), t + 123456789ns);
  EXPECT_EQ(*ParseTime("2026-11-28T04:34:05+01:30"), t);
  EXPECT_EQ(*ParseTime("2026-11-27T22:04:05-05:00"), t);
  EXPECT_EQ(*ParseTime("2262-04-11T23:47:15.999999999Z"),
            WallTime(std::chrono::nanoseconds(9223372035999999999)));
}

TEST(TimeJsonTest, ParseTimeRejectsGarbage) {
  for (const char* text :
       {"", "garbage", "2026-11-28", "2026-11-28T03:04:05", "2026-11-28 03:04:05Z",
        "2026-11-28T03:04Z", "2026-1-28T03:04:05Z", "26-11-28T03:04:05Z", "+2026-11-28T03:04:05Z",
        " 2026-11-28T03:04:05Z", "2026-11-28T03:04:05Z ", "2026-11-28T03:04:05.Z",
        "2026-11-28T03:04:05.1234567890Z", "2026-11-28T03:04:05,123Z",
        "2026-11-28T03:04:05.123+0100", "2026-11-28T03:04:05.123+01",
        "2026-11-28T03:04:05.123+24:00", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
        "2026-02-29T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-28T24:00:00Z",
        "2026-11-28T03:60:00Z", "2026-11-28T03:04:60Z", "2026-11-28T03:04:05.123ZZ",
        // Beyond WallTime's 64-bit nanoseconds.
        "2262-04-11T23:47:16Z", "0000-01-01T00:00:00Z", "1600-01-01T00:00:00Z",
        "2300-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z"}) {
    api::StatusOr<WallTime> parsed = ParseTime(text);
    ASSERT_FALSE(parsed.ok()) << "\"" << text << "\" parsed";
    EXPECT_TRUE(parsed.status().IsInvalidArgument()) << parsed.status();
  }
}

}  // namespace
}  // namespace vmlet::controller
