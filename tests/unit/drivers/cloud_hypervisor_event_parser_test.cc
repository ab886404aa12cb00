// ChEventParser and ChEventSummary on the stream Cloud Hypervisor writes for
// --event-monitor: pretty-printed JSON objects separated by blank lines,
// written as things happen (so a reader may see half an object).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "drivers/cloud_hypervisor/ch_event_parser.h"

namespace vmlet::drivers {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// One event as CH writes it: serde_json's to_string_pretty, then "\n\n".
std::string Pretty(const std::string& source, const std::string& event, int64_t secs, int64_t nanos,
                   const std::string& properties = "null") {
  return "{\n  \"timestamp\": {\n    \"secs\": " + std::to_string(secs) +
         ",\n    \"nanos\": " + std::to_string(nanos) + "\n  },\n  \"source\": \"" + source +
         "\",\n  \"event\": \"" + event + "\",\n  \"properties\": " + properties + "\n}\n\n";
}

TEST(ChEventParserTest, ParsesPrettyPrintedEventsSeparatedByBlankLines) {
  ChEventParser parser;
  const std::vector<ChEvent> events =
      parser.Feed(Pretty("vmm", "starting", 0, 81234) + Pretty("vm", "booting", 1, 500) +
                  Pretty("virtio-device", "activated", 1, 900, "{\n    \"id\": \"_disk0\"\n  }"));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], (ChEvent{nanoseconds(81234), "vmm", "starting", {}}));
  EXPECT_EQ(events[1], (ChEvent{seconds(1) + nanoseconds(500), "vm", "booting", {}}));
  EXPECT_EQ(
      events[2],
      (ChEvent{seconds(1) + nanoseconds(900), "virtio-device", "activated", {{"id", "_disk0"}}}));
  EXPECT_FALSE(parser.partial());
  EXPECT_EQ(parser.malformed(), 0u);
}

TEST(ChEventParserTest, PartialObjectAtTheEndIsNotParsedUntilItIsComplete) {
  ChEventParser parser;
  const std::string whole = Pretty("vm", "booted", 2, 7);
  const size_t cut = whole.find("\"event\"");
  EXPECT_TRUE(parser.Feed(whole.substr(0, cut)).empty());
  EXPECT_TRUE(parser.partial());
  const std::vector<ChEvent> events = parser.Feed(whole.substr(cut));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "booted");
  EXPECT_FALSE(parser.partial());
}

TEST(ChEventParserTest, ByteAtATimeGivesTheSameEvents) {
  const std::string stream = Pretty("vm", "booting", 0, 1) + Pretty("vm", "booted", 0, 2);
  ChEventParser parser;
  std::vector<ChEvent> events;
  for (char c : stream) {
    for (ChEvent& e : parser.Feed(std::string_view(&c, 1))) events.push_back(std::move(e));
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].event, "booting");
  EXPECT_EQ(events[1].event, "booted");
}

TEST(ChEventParserTest, BracesAndQuotesInsideStringsDoNotEndTheObject) {
  ChEventParser parser;
  const std::vector<ChEvent> events =
      parser.Feed(Pretty("guest", "panic", 3, 0, R"({"event": "a } \" { weird"})"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].properties.at("event"), "a } \" { weird");
}

TEST(ChEventParserTest, BlankLinesAreNotNeededBetweenObjects) {
  ChEventParser parser;
  const std::vector<ChEvent> events =
      parser.Feed(R"({"source":"vm","event":"paused"}{"source":"vm","event":"resumed"})");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].event, "resumed");
  EXPECT_EQ(events[1].timestamp, nanoseconds(0)) << "no timestamp reads as 0";
}

TEST(ChEventParserTest, NonEventsAndStrayTextAreSkippedAndCounted) {
  ChEventParser parser;
  const std::vector<ChEvent> events =
      parser.Feed("garbage here\n" + std::string(R"({"source": 1, "event": "x"})") +
                  "\n{ not json }\n" + Pretty("vm", "shutdown", 9, 0));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "shutdown");
  EXPECT_EQ(parser.malformed(), 3u);
}

TEST(ChEventParserTest, NonStringPropertiesAreKeptAsJsonText) {
  ChEventParser parser;
  const std::vector<ChEvent> events =
      parser.Feed(R"({"source":"cpu_manager","event":"create_vcpu","properties":{"id":3}})");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].properties.at("id"), "3");
}

ChEventSummary Summarize(const std::string& stream) {
  ChEventParser parser;
  ChEventSummary summary;
  for (const ChEvent& e : parser.Feed(stream)) summary.Add(e);
  return summary;
}

TEST(ChEventSummaryTest, BootDurationRunsFromVmBootingToVmBooted) {
  const ChEventSummary summary =
      Summarize(Pretty("vmm", "starting", 0, 1000) + Pretty("vm", "booting", 0, 250'000'000) +
                Pretty("vm", "booted", 1, 100'000'000));
  ASSERT_TRUE(summary.BootDuration().has_value());
  EXPECT_EQ(*summary.BootDuration(), milliseconds(850));
  EXPECT_FALSE(summary.vm_shutdown);
  EXPECT_EQ(summary.events, 3u);
}

TEST(ChEventSummaryTest, NoBootDurationUntilBootedIsSeen) {
  EXPECT_FALSE(Summarize(Pretty("vm", "booting", 0, 5)).BootDuration().has_value());
  EXPECT_FALSE(Summarize(Pretty("vm", "booted", 0, 5)).BootDuration().has_value());
}

TEST(ChEventSummaryTest, ALaterBootingStartsANewBoot) {
  const ChEventSummary summary =
      Summarize(Pretty("vm", "booting", 0, 0) + Pretty("vm", "booted", 1, 0) +
                Pretty("vm", "booting", 5, 0) + Pretty("vm", "booted", 7, 0));
  EXPECT_EQ(summary.BootDuration(), std::optional<nanoseconds>(seconds(2)));
}

TEST(ChEventSummaryTest, GuestPowerOffShowsAsVmAndVmmShutdown) {
  const ChEventSummary summary =
      Summarize(Pretty("vm", "booted", 1, 0) + Pretty("vm", "shutdown", 4, 0) +
                Pretty("vm", "deleted", 4, 1) + Pretty("vmm", "shutdown", 4, 2));
  EXPECT_TRUE(summary.vm_shutdown);
  EXPECT_TRUE(summary.vmm_shutdown);
  EXPECT_FALSE(summary.guest_panic.has_value());
}

TEST(ChEventSummaryTest, GuestPanicKeepsItsProperties) {
  const ChEventSummary summary =
      Summarize(Pretty("guest", "panic", 4, 0, R"({"event": "panicked"})"));
  EXPECT_EQ(summary.guest_panic, std::optional<std::string>("event=panicked"));
}

TEST(ReadChEventSummaryTest, ReadsTheFileAndLeavesAnUnfinishedLastObjectOut) {
  char dir[] = "/tmp/vmlet-ch-events-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/events.json";
  const std::string last = Pretty("vm", "shutdown", 3, 0);
  std::ofstream(path) << Pretty("vm", "booting", 0, 0) << Pretty("vm", "booted", 0, 9)
                      << last.substr(0, last.size() / 2);
  api::StatusOr<ChEventSummary> summary = ReadChEventSummary(path);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->events, 2u);
  EXPECT_FALSE(summary->vm_shutdown);
  EXPECT_EQ(ReadChEventSummary(std::string(dir) + "/missing.json").status().code(),
            api::Status::Code::kNotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vmlet::drivers
