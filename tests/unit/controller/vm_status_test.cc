#include "controller/vm_status.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/unit/controller/state_samples.h"

namespace vmlet::controller {
namespace {

using namespace std::chrono_literals;

using state_samples::kT0;  // 2026-11-28T00:00:00Z

// Conditions.

TEST(ConditionTest, SetConditionAddsMissingConditionsInInsertionOrder) {
  VmStatus status;
  SetCondition(status, {"Ready", "False", "Booting", "", kT0});
  SetCondition(status, {"ManifestValid", "True", "Valid", "", kT0 + 1s});
  SetCondition(status, {"Converged", "False", "Booting", "", kT0 + 2s});

  ASSERT_EQ(status.conditions.size(), 3u);
  EXPECT_EQ(status.conditions[0].type, "Ready");
  EXPECT_EQ(status.conditions[1].type, "ManifestValid");
  EXPECT_EQ(status.conditions[2].type, "Converged");
}

TEST(ConditionTest, UnchangedStatusKeepsTransitionTimeButTakesNewReasonAndMessage) {
  VmStatus status;
  SetCondition(status, {"Ready", "False", "Booting", "starting", kT0});
  SetCondition(status, {"Ready", "False", "WaitingForGuest", "no answer yet", kT0 + 5s});

  ASSERT_EQ(status.conditions.size(), 1u);
  EXPECT_EQ(status.conditions[0],
            (Condition{"Ready", "False", "WaitingForGuest", "no answer yet", kT0}));
}

TEST(ConditionTest, ChangedStatusTakesNewTransitionTime) {
  VmStatus status;
  SetCondition(status, {"Ready", "False", "Booting", "", kT0});
  SetCondition(status, {"Paused", "False", "Running", "", kT0});
  SetCondition(status, {"Ready", "True", "GuestReady", "", kT0 + 7s});

  ASSERT_EQ(status.conditions.size(), 2u);
  EXPECT_EQ(status.conditions[0], (Condition{"Ready", "True", "GuestReady", "", kT0 + 7s}));
  EXPECT_EQ(status.conditions[1].type, "Paused");
}

TEST(ConditionTest, FindConditionReturnsTheConditionOfThatTypeOrNull) {
  VmStatus status;
  SetCondition(status, {"Ready", "True", "GuestReady", "", kT0});
  SetCondition(status, {"Paused", "False", "Running", "", kT0});

  const Condition* paused = FindCondition(status, "Paused");
  ASSERT_NE(paused, nullptr);
  EXPECT_EQ(paused->reason, "Running");
  EXPECT_EQ(FindCondition(status, "CrashLoopBackOff"), nullptr);
  EXPECT_EQ(FindCondition(VmStatus{}, "Ready"), nullptr);
}

}  // namespace
}  // namespace vmlet::controller
