#include "metrics/metered_driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "drivers/vmm_identity.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_proc_fs.h"

namespace vmlet::metrics {
namespace {

using std::chrono::milliseconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

// A driver that records what it is asked, takes `latency` of fake time per
// call, and answers with `answer` (OK unless a test says otherwise).
class RecordingDriver final : public drivers::VmDriver {
 public:
  RecordingDriver(testing::FakeClock& clock, const drivers::ProcFs& proc_fs)
      : clock_(clock), proc_fs_(proc_fs) {}

  std::string_view name() const override { return "fake"; }
  std::vector<api::FieldError> CheckSpec(const api::VmSpec&) const override {
    calls.push_back("CheckSpec");
    return {{"spec.rosetta", "not on Linux"}};
  }
  api::StatusOr<drivers::BootResult> Boot(const api::VmSpec&, const std::string& vm_dir,
                                          drivers::Deadline deadline) override {
    if (api::Status s = Call("Boot " + vm_dir, deadline); !s.ok()) return s;
    return drivers::BootResult::Launched(
        drivers::VmmHandle{"fake", {4242, 77}, "boot-id", vm_dir, vm_dir + "/api.sock"});
  }
  api::StatusOr<drivers::Observation> Observe(const drivers::ConfirmedVmm& vmm,
                                              drivers::Deadline deadline) override {
    if (api::Status s = Call("Observe " + vmm.handle().vm_dir, deadline); !s.ok()) return s;
    return drivers::Observation{api::VmState::Ready("10.0.0.2"), std::nullopt, std::nullopt};
  }
  api::Status Pause(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return Call("Pause " + vmm.handle().vm_dir, deadline);
  }
  api::Status Resume(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return Call("Resume " + vmm.handle().vm_dir, deadline);
  }
  api::Status Shutdown(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return Call("Shutdown " + vmm.handle().vm_dir, deadline);
  }
  api::Status Kill(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override {
    return Call("Kill " + vmm.handle().vm_dir, deadline);
  }
  drivers::VmmExit ExitState(const drivers::VmmHandle& handle) override {
    calls.push_back("ExitState " + handle.vm_dir);
    return api::VmState::Failed("the VMM crashed");
  }
  api::Status Cleanup(const drivers::VmmHandle& handle, drivers::Deadline deadline) override {
    return Call("Cleanup " + handle.vm_dir, deadline);
  }
  api::StatusOr<std::optional<drivers::VmmHandle>> Rediscover(const std::string& vm_dir) override {
    if (api::Status s = Call("Rediscover " + vm_dir, std::nullopt); !s.ok()) return s;
    return std::optional<drivers::VmmHandle>();
  }
  const drivers::ProcFs& proc_fs() const override { return proc_fs_; }
  void SetChangeListener(ChangeListener listener) override { listener_ = std::move(listener); }

  void NotifyChange(const std::string& vm_dir) {
    if (listener_) listener_(vm_dir);
  }

  mutable std::vector<std::string> calls;
  std::vector<drivers::Deadline> deadlines;
  milliseconds latency{0};
  api::Status answer = api::Status::Ok();

 private:
  api::Status Call(std::string what, std::optional<drivers::Deadline> deadline) {
    calls.push_back(std::move(what));
    if (deadline) deadlines.push_back(*deadline);
    clock_.Advance(latency);
    return answer;
  }

  testing::FakeClock& clock_;
  const drivers::ProcFs& proc_fs_;
  ChangeListener listener_;
};

class MeteredDriverTest : public ::testing::Test {
 protected:
  MeteredDriverTest() { proc_fs_.AddProcess(4242, 77, {"fake-vmm", "--dir", kVmDir}); }

  // A confirmed VMM, as the reconciler holds one before any call.
  drivers::ConfirmedVmm Confirmed() {
    drivers::VmmHandle handle{"fake",
                              {4242, 77},
                              testing::FakeProcFs::kDefaultBootId,
                              kVmDir,
                              std::string(kVmDir) + "/api.sock"};
    drivers::VmmIdentity::Check check = identity_.Confirm({"prod", "web-1"}, handle);
    EXPECT_EQ(check.verdict, drivers::VmmIdentity::Verdict::kConfirmed) << check.reason;
    return *check.vmm;
  }

  // The sample lines of `name` (see vmlet_metrics_test.cc).
  std::vector<std::string> Samples(const std::string& name) {
    std::ostringstream text;
    prometheus::TextSerializer().Serialize(text, metrics_.registry()->Collect());
    std::vector<std::string> out;
    std::istringstream in(text.str());
    for (std::string line; std::getline(in, line);) {
      if (line.empty() || line[0] == '#') continue;
      if (line.substr(0, line.find_first_of("{ ")) == name) out.push_back(line);
    }
    return out;
  }

  static constexpr const char* kVmDir = "/s/vms/prod/web-1";

  testing::FakeClock clock_;
  testing::FakeProcFs proc_fs_;
  drivers::VmmIdentity identity_{proc_fs_};
  VmletMetrics metrics_{clock_, {"1.2.3", {"fake"}, {}, "n1"}};
  RecordingDriver inner_{clock_, proc_fs_};
  MeteredDriver driver_{inner_, metrics_, clock_};
};

TEST_F(MeteredDriverTest, EveryCallIsForwardedWithItsArgumentsAndAnswer) {
  const drivers::Deadline deadline = clock_.MonotonicNow() + std::chrono::seconds(10);
  const drivers::ConfirmedVmm vmm = Confirmed();

  EXPECT_EQ(driver_.name(), "fake");
  EXPECT_EQ(&driver_.proc_fs(), &proc_fs_);
  EXPECT_EQ(driver_.CheckSpec(api::VmSpec{}),
            (std::vector<api::FieldError>{{"spec.rosetta", "not on Linux"}}));
  api::StatusOr<drivers::BootResult> booted = driver_.Boot(api::VmSpec{}, kVmDir, deadline);
  ASSERT_TRUE(booted.ok());
  const drivers::VmmHandle* handle = booted->handle();
  ASSERT_NE(handle, nullptr);
  EXPECT_EQ(handle->process.pid, 4242);
  api::StatusOr<drivers::Observation> seen = driver_.Observe(vmm, deadline);
  ASSERT_TRUE(seen.ok());
  EXPECT_EQ(seen->state, api::VmState::Ready("10.0.0.2"));
  EXPECT_TRUE(driver_.Pause(vmm, deadline).ok());
  EXPECT_TRUE(driver_.Resume(vmm, deadline).ok());
  EXPECT_TRUE(driver_.Shutdown(vmm, deadline).ok());
  EXPECT_TRUE(driver_.Kill(vmm, deadline).ok());
  EXPECT_EQ(driver_.ExitState(*handle), api::VmState::Failed("the VMM crashed"));
  EXPECT_TRUE(driver_.Cleanup(*handle, deadline).ok());
  api::StatusOr<std::optional<drivers::VmmHandle>> found = driver_.Rediscover(kVmDir);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());

  const std::string dir = kVmDir;
  EXPECT_THAT(inner_.calls,
              ElementsAre("CheckSpec", "Boot " + dir, "Observe " + dir, "Pause " + dir,
                          "Resume " + dir, "Shutdown " + dir, "Kill " + dir, "ExitState " + dir,
                          "Cleanup " + dir, "Rediscover " + dir));
  EXPECT_EQ(inner_.deadlines, std::vector<drivers::Deadline>(7, deadline));
}

TEST_F(MeteredDriverTest, ChangeListenerIsTheInnerDriversOwn) {
  std::vector<std::string> changed;
  driver_.SetChangeListener([&](const std::string& vm_dir) { changed.push_back(vm_dir); });
  inner_.NotifyChange(kVmDir);
  EXPECT_THAT(changed, ElementsAre(kVmDir));
}

TEST_F(MeteredDriverTest, SeriesOfTheDriverExistAtZeroOnceWrapped) {
  std::vector<std::string> ops = Samples("vmlet_driver_operations_total");
  EXPECT_EQ(ops.size(), 16u);
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"rediscover\","
                            "result=\"error\"} 0"));
}

TEST_F(MeteredDriverTest, EachOperationIsCountedByResultAndTimedOnTheClock) {
  const drivers::Deadline deadline = clock_.MonotonicNow() + std::chrono::seconds(10);
  const drivers::ConfirmedVmm vmm = Confirmed();
  inner_.latency = milliseconds(300);
  ASSERT_TRUE(driver_.Boot(api::VmSpec{}, kVmDir, deadline).ok());
  inner_.latency = milliseconds(2);
  ASSERT_TRUE(driver_.Observe(vmm, deadline).ok());
  ASSERT_TRUE(driver_.Observe(vmm, deadline).ok());
  inner_.answer = api::Status::Unavailable("QMP socket not up yet");
  EXPECT_FALSE(driver_.Observe(vmm, deadline).ok());
  EXPECT_FALSE(driver_.Pause(vmm, deadline).ok());
  EXPECT_FALSE(driver_.Rediscover(kVmDir).ok());

  std::vector<std::string> ops = Samples("vmlet_driver_operations_total");
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"boot\","
                            "result=\"ok\"} 1"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"observe\","
                            "result=\"ok\"} 2"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"observe\","
                            "result=\"error\"} 1"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"pause\","
                            "result=\"error\"} 1"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"rediscover\","
                            "result=\"error\"} 1"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"fake\",op=\"kill\","
                            "result=\"ok\"} 0"));

  EXPECT_THAT(Samples("vmlet_driver_operation_duration_seconds_sum"),
              Contains("vmlet_driver_operation_duration_seconds_sum{driver=\"fake\","
                       "op=\"boot\"} 0.3"));
  std::vector<std::string> buckets = Samples("vmlet_driver_operation_duration_seconds_bucket");
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"fake\","
                                "op=\"boot\",le=\"0.25\"} 0"));
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"fake\","
                                "op=\"boot\",le=\"0.5\"} 1"));
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"fake\","
                                "op=\"observe\",le=\"0.001\"} 0"));
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"fake\","
                                "op=\"observe\",le=\"0.0025\"} 3"));
}

TEST_F(MeteredDriverTest, LocalCallsAreNotCounted) {
  (void)driver_.CheckSpec(api::VmSpec{});
  (void)driver_.ExitState(drivers::VmmHandle{});
  for (const std::string& line : Samples("vmlet_driver_operations_total")) {
    EXPECT_TRUE(line.ends_with("} 0")) << line;
  }
  EXPECT_THAT(Samples("vmlet_driver_operations_total"), Not(IsEmpty()));
}

}  // namespace
}  // namespace vmlet::metrics
