// The seed's VmState display and helper tests (vm-rs src/config.rs), ported.
#include "api/vm_state.h"

#include <gtest/gtest.h>

namespace vmlet::api {
namespace {

TEST(VmStateTest, StartingDisplaysAsStarting) {
  EXPECT_EQ(VmState::Starting().ToString(), "starting");
}

TEST(VmStateTest, ReadyDisplaysItsIp) {
  EXPECT_EQ(VmState::Ready("10.0.1.2").ToString(), "ready (10.0.1.2)");
}

TEST(VmStateTest, RunningWithoutReadinessDisplaysAsRunning) {
  EXPECT_EQ(VmState::Running().ToString(), "running");
}

TEST(VmStateTest, PausedDisplaysAsPaused) { EXPECT_EQ(VmState::Paused().ToString(), "paused"); }

TEST(VmStateTest, StoppedDisplaysAsStopped) { EXPECT_EQ(VmState::Stopped().ToString(), "stopped"); }

TEST(VmStateTest, FailedDisplaysItsReason) {
  EXPECT_EQ(VmState::Failed("timeout").ToString(), "failed: timeout");
}

TEST(VmStateTest, EqualityComparesPhaseAndDetail) {
  EXPECT_EQ(VmState::Starting(), VmState::Starting());
  EXPECT_EQ(VmState::Stopped(), VmState::Stopped());
  EXPECT_NE(VmState::Starting(), VmState::Stopped());
  EXPECT_EQ(VmState::Ready("10.0.1.2"), VmState::Ready("10.0.1.2"));
  EXPECT_NE(VmState::Ready("10.0.1.2"), VmState::Ready("10.0.1.3"));
  EXPECT_NE(VmState::Failed("timeout"), VmState::Failed("crashed"));
}

TEST(VmStateTest, HelperMethodsSeparateRunningFromReady) {
  VmState ready = VmState::Ready("10.0.1.2");
  EXPECT_TRUE(VmState::Running().is_running());
  EXPECT_FALSE(VmState::Running().is_ready());
  EXPECT_TRUE(ready.is_running());
  EXPECT_TRUE(ready.is_ready());
  EXPECT_EQ(ready.ip(), "10.0.1.2");
  EXPECT_EQ(VmState::Starting().ip(), std::nullopt);
  EXPECT_EQ(VmState::Running().ip(), std::nullopt);
}

TEST(VmStateTest, OnlyRunningAndReadyAreRunning) {
  EXPECT_FALSE(VmState::Starting().is_running());
  EXPECT_FALSE(VmState::Paused().is_running());
  EXPECT_FALSE(VmState::Stopped().is_running());
  EXPECT_FALSE(VmState::Failed("x").is_running());
}

TEST(VmStateTest, ReasonIsOnlyGivenForFailed) {
  EXPECT_EQ(VmState::Failed("boot timeout").reason(), "boot timeout");
  EXPECT_EQ(VmState::Ready("10.0.0.1").reason(), "");
}

TEST(VmStateTest, PhaseNamesAreTheStatusSpellings) {
  EXPECT_EQ(PhaseName(VmState::Phase::kStarting), "Starting");
  EXPECT_EQ(PhaseName(VmState::Phase::kRunning), "Running");
  EXPECT_EQ(PhaseName(VmState::Phase::kReady), "Ready");
  EXPECT_EQ(PhaseName(VmState::Phase::kPaused), "Paused");
  EXPECT_EQ(PhaseName(VmState::Phase::kStopped), "Stopped");
  EXPECT_EQ(PhaseName(VmState::Phase::kFailed), "Failed");
}

}  // namespace
}  // namespace vmlet::api
