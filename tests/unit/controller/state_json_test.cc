#include "controller/state_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace ::vmlet::controller::state_samples;

using ::testing::StartsWith;
using namespace std::chrono_literals;
using nlohmann::json;

// record.json.

TEST(VmRecordJsonTest, FullRecordHasThisExactForm) {
  EXPECT_EQ(
      ToJson(FullRecord()).dump(),
      R"({"bootRequestedAt":"2026-11-28T00:00:01.500Z","consecutiveFailures":1,"driver":"qemu",)"
      R"("lastExitPhase":"Failed","lastExitReason":"VMM exited with status 1",)"
      R"("readyAt":"2026-11-28T00:00:12.250Z","restartCount":2,"specHash":"3f2a9c1d00b1e2f4",)"
      R"("stopGraceSeconds":45,"stopRequested":true,"stopRequestedAt":"2026-11-28T00:01:00.000Z",)"
      R"("version":1,"vmm":{"bootId":"0b5c7e8a-6f0d-4d38-9f1e-2a3b4c5d6e7f","driver":"qemu",)"
      R"("pid":4242,"socketPath":"/var/lib/vmlet/vms/default/web/qmp.sock",)"
      R"("startTimeTicks":123456789,"vmDir":"/var/lib/vmlet/vms/default/web"}})");
}

TEST(VmRecordJsonTest, MinimalRecordOmitsVmmAndTimes) {
  EXPECT_EQ(ToJson(MinimalRecord()).dump(),
            R"({"consecutiveFailures":0,"driver":"fake","lastExitPhase":"","lastExitReason":"",)"
            R"("restartCount":0,"specHash":"abc","stopGraceSeconds":30,"stopRequested":false,)"
            R"("version":1})");
}

TEST(VmRecordJsonTest, FullAndMinimalRecordsRoundTrip) {
  for (const VmRecord& record : {FullRecord(), MinimalRecord()}) {
    api::StatusOr<VmRecord> back = VmRecordFromJson(json::parse(ToJson(record).dump()));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, record);
  }
}

TEST(VmRecordJsonTest, OnlyVersionDriverAndSpecHashAreNeededAndNullTimesAreNone) {
  api::StatusOr<VmRecord> record = VmRecordFromJson(
      json::parse(R"({"version":1,"driver":"fake","specHash":"abc","readyAt":null,"vmm":null})"));
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(*record, MinimalRecord());
}

TEST(VmRecordJsonTest, UnknownFieldsAreIgnored) {
  json j = ToJson(FullRecord());
  j["addedInVersion1Point5"] = {{"anything", json::array({1, 2})}};
  j["vmm"]["cgroup"] = "/vmlet.slice/web";
  api::StatusOr<VmRecord> record = VmRecordFromJson(j);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(*record, FullRecord());
}

TEST(VmRecordJsonTest, MalformedRecordsAreInvalidArgumentNamingTheField) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {R"([])", "record: must be a JSON object"},
      {R"({"driver":"fake","specHash":"abc"})", "version: missing"},
      {R"({"version":2,"driver":"fake","specHash":"abc"})",
       "version: 2 is not a known record version (1)"},
      {R"({"version":"1","driver":"fake","specHash":"abc"})", "version: must be an integer"},
      {R"({"version":1,"specHash":"abc"})", "driver: missing"},
      {R"({"version":1,"driver":"fake"})", "specHash: missing"},
      {R"({"version":1,"driver":5,"specHash":"abc"})", "driver: must be a string"},
      {R"({"version":1,"driver":null,"specHash":"abc"})", "driver: must be a string"},
      {R"({"version":1,"driver":"fake","specHash":"abc","stopRequested":"yes"})",
       "stopRequested: must be a boolean"},
      {R"({"version":1,"driver":"fake","specHash":"abc","restartCount":-1})",
       "restartCount: out of range"},
      {R"({"version":1,"driver":"fake","specHash":"abc","restartCount":4294967296})",
       "restartCount: out of range"},
      {R"({"version":1,"driver":"fake","specHash":"abc","restartCount":1.5})",
       "restartCount: must be an integer"},
      {R"({"version":1,"driver":"fake","specHash":"abc","stopGraceSeconds":-1})",
       "stopGraceSeconds: out of range"},
      {R"({"version":1,"driver":"fake","specHash":"abc","readyAt":12})",
       "readyAt: must be an RFC 3339 time string"},
      {R"({"version":1,"driver":"fake","specHash":"abc","vmm":"qemu"})", "vmm: must be an object"},
      {R"({"version":1,"driver":"fake","specHash":"abc","vmm":{"driver":"qemu",)"
       R"("pid":"4242","startTimeTicks":1,"bootId":"b","vmDir":"/d","socketPath":"/d/s"}})",
       "vmm.pid: must be an integer"},
      {R"({"version":1,"driver":"fake","specHash":"abc","vmm":{"driver":"qemu",)"
       R"("pid":0,"startTimeTicks":1,"bootId":"b","vmDir":"/d","socketPath":"/d/s"}})",
       "vmm.pid: out of range"},
      {R"({"version":1,"driver":"fake","specHash":"abc","vmm":{"driver":"qemu",)"
       R"("pid":4242,"bootId":"b","vmDir":"/d","socketPath":"/d/s"}})",
       "vmm.startTimeTicks: missing"},
  };
  for (const Case& c : cases) {
    api::StatusOr<VmRecord> record = VmRecordFromJson(json::parse(c.json));
    ASSERT_FALSE(record.ok()) << c.json;
    EXPECT_EQ(record.status(), api::Status::InvalidArgument(c.message)) << c.json;
  }
}

TEST(VmRecordJsonTest, BadTimeIsInvalidArgumentNamingTheField) {
  api::StatusOr<VmRecord> record = VmRecordFromJson(json::parse(
      R"({"version":1,"driver":"fake","specHash":"abc","bootRequestedAt":"yesterday"})"));
  ASSERT_FALSE(record.ok());
  EXPECT_TRUE(record.status().IsInvalidArgument());
  EXPECT_THAT(record.status().message(), StartsWith("bootRequestedAt: \"yesterday\""));
}

// ---------------------------------------------------------------------------
// status.json.

TEST(VmStatusJsonTest, FullStatusHasThisExactForm) {
  EXPECT_EQ(
      ToJson(FullStatus()).dump(),
      R"({"conditions":[{"lastTransitionTime":"2026-11-28T00:00:12.250Z","message":"guest answered",)"
      R"("reason":"GuestReady","status":"True","type":"Ready"},)"
      R"({"lastTransitionTime":"2026-11-28T00:00:00.000Z","message":"","reason":"Valid",)"
      R"("status":"True","type":"ManifestValid"}],"desiredState":"Running","ip":"10.0.0.7",)"
      R"("lastBootDurationSeconds":10.75,"observedGeneration":"3f2a9c1d00b1e2f4","phase":"Ready",)"
      R"("reason":"","restartCount":2,"vmm":{"driver":"qemu","pid":4242,"startTimeTicks":123456789}})");
}

TEST(VmStatusJsonTest, MinimalStatusOmitsVmmAndBootDuration) {
  EXPECT_EQ(ToJson(VmStatus{}).dump(),
            R"({"conditions":[],"desiredState":"","ip":"","observedGeneration":"","phase":"",)"
            R"("reason":"","restartCount":0})");
}

TEST(VmStatusJsonTest, FullAndMinimalStatusesRoundTrip) {
  for (const VmStatus& status : {FullStatus(), VmStatus{}}) {
    api::StatusOr<VmStatus> back = VmStatusFromJson(json::parse(ToJson(status).dump()));
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, status);
  }
}

TEST(VmStatusJsonTest, MalformedStatusesAreInvalidArgumentNamingTheField) {
  struct Case {
    const char* json;
    const char* message;
  };
  const Case cases[] = {
      {R"("Ready")", "status: must be a JSON object"},
      {R"({"phase":1})", "phase: must be a string"},
      {R"({"conditions":{}})", "conditions: must be an array"},
      {R"({"conditions":[{"type":"Ready","status":"True","lastTransitionTime":)"
       R"("2026-11-28T00:00:00.000Z"},{"type":"Paused","lastTransitionTime":)"
       R"("2026-11-28T00:00:00.000Z"}]})",
       "conditions[1].status: missing"},
      {R"({"conditions":[{"type":"Ready","status":"True"}]})",
       "conditions[0].lastTransitionTime: missing"},
      {R"({"lastBootDurationSeconds":"10s"})", "lastBootDurationSeconds: must be a number"},
      {R"({"vmm":{"driver":"qemu","pid":-1,"startTimeTicks":1}})", "vmm.pid: out of range"},
  };
  for (const Case& c : cases) {
    api::StatusOr<VmStatus> status = VmStatusFromJson(json::parse(c.json));
    ASSERT_FALSE(status.ok()) << c.json;
    EXPECT_EQ(status.status(), api::Status::InvalidArgument(c.message)) << c.json;
  }
}

// ---------------------------------------------------------------------------
// Event lines.

TEST(EventJsonTest, EventHasThisExactFormAndRoundTrips) {
  const Event event = MakeEvent(kT0 + 1500ms, "Booted", "booted in 1.5s");
  EXPECT_EQ(ToJson(event).dump(),
            R"({"message":"booted in 1.5s","reason":"Booted","time":"2026-11-28T00:00:01.500Z",)"
            R"("type":"Normal"})");
  api::StatusOr<Event> back = EventFromJson(ToJson(event));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, event);
}

TEST(EventJsonTest, MessageIsOptionalButTimeTypeAndReasonAreNot) {
  api::StatusOr<Event> minimal = EventFromJson(
      json::parse(R"({"time":"2026-11-28T00:00:00.000Z","type":"Warning","reason":"Crashed"})"));
  ASSERT_TRUE(minimal.ok()) << minimal.status();
  EXPECT_EQ(*minimal, (Event{kT0, "Warning", "Crashed", ""}));

  EXPECT_EQ(EventFromJson(json::parse(R"({"type":"Normal","reason":"Booted"})")).status(),
            api::Status::InvalidArgument("time: missing"));
  EXPECT_EQ(
      EventFromJson(json::parse(R"({"time":"2026-11-28T00:00:00.000Z","type":"Normal"})")).status(),
      api::Status::InvalidArgument("reason: missing"));
}

}  // namespace
}  // namespace vmlet::controller
