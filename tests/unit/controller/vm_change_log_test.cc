#include "controller/vm_change_log.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace ::vmlet::controller::state_samples;

using std::chrono::seconds;

TEST(VmChangeLogTest, EachChangeBumpsTheVersionAndSameObservationDoesNot) {
  VmChangeLog log;
  const api::VmKey key{"prod", "web-1"};
  const WallTime created = WallTime(seconds(1795824000));
  VmObservation o{Desired(key), Status("Starting")};
  EXPECT_TRUE(log.Record(key, o, created));
  EXPECT_FALSE(log.Record(key, o, created));
  o.desired = Desired(key);  // an equal spec from a newer scan
  EXPECT_FALSE(log.Record(key, o, created));
  EXPECT_EQ(log.resource_version(), 1u);

  o.status = Status("Ready", "10.0.0.2");
  EXPECT_TRUE(log.Record(key, o, WallTime{}));
  std::optional<VmObject> vm = log.Get(key);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->resource_version, 2u);
  EXPECT_EQ(vm->generation, 1);     // the status changed, not the spec
  EXPECT_EQ(vm->created, created);  // taken when it appeared

  o.desired = Desired(key, {}, api::DesiredState::kStopped);
  EXPECT_TRUE(log.Record(key, o, WallTime{}));
  EXPECT_EQ(log.Get(key)->generation, 2);

  VmChangeLog::Changes changes = log.Since(0);
  ASSERT_EQ(changes.changes.size(), 3u);
  EXPECT_EQ(changes.changes[0].type, VmChangeLog::ChangeType::kAdded);
  EXPECT_FALSE(changes.changes[0].previous.has_value());
  EXPECT_EQ(changes.changes[1].type, VmChangeLog::ChangeType::kModified);
  EXPECT_EQ(changes.changes[1].previous->status->phase, "Starting");
  EXPECT_EQ(changes.changes[2].object.resource_version, 3u);
  EXPECT_EQ(log.Since(2).changes.size(), 1u);
  EXPECT_TRUE(log.Since(3).changes.empty());
}

TEST(VmChangeLogTest, AVmBeingDeletedKeepsItsLastSpecUntilItIsGone) {
  VmChangeLog log;
  const api::VmKey key{"prod", "web-1"};
  ASSERT_TRUE(log.Record(key, {Desired(key, {{"app", "web"}}), Status("Ready")}, WallTime{}));
  ASSERT_TRUE(log.Record(key, {nullptr, Status("Running", "", "Deleted")}, WallTime{}));
  std::optional<VmObject> vm = log.Get(key);
  ASSERT_TRUE(vm && vm->desired);
  EXPECT_EQ(vm->labels().at("app"), "web");
  EXPECT_EQ(vm->generation, 1);

  ASSERT_TRUE(log.Record(key, {}, WallTime{}));
  EXPECT_FALSE(log.Get(key).has_value());
  VmChangeLog::Changes changes = log.Since(2);
  ASSERT_EQ(changes.changes.size(), 1u);
  EXPECT_EQ(changes.changes[0].type, VmChangeLog::ChangeType::kDeleted);
  EXPECT_EQ(changes.changes[0].object.resource_version, 3u);
  EXPECT_EQ(changes.changes[0].object.status->desired_state, "Deleted");
  EXPECT_FALSE(log.Record(key, {}, WallTime{}));  // gone stays gone
}

TEST(VmChangeLogTest, AVersionOlderThanTheLogHoldsIsExpired) {
  VmChangeLog log(2);
  const api::VmKey key{"prod", "web-1"};
  for (const char* phase : {"Starting", "Running", "Ready", "Paused"}) {
    ASSERT_TRUE(log.Record(key, {Desired(key), Status(phase)}, WallTime{}));
  }
  EXPECT_TRUE(log.Since(0).expired);
  EXPECT_TRUE(log.Since(1).expired);
  EXPECT_FALSE(log.Since(2).expired);
  EXPECT_EQ(log.Since(2).changes.size(), 2u);
  EXPECT_EQ(log.Since(4).changes.size(), 0u);
  EXPECT_EQ(log.Since(4).resource_version, 4u);
}

}  // namespace
}  // namespace vmlet::controller
