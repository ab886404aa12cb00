#include "metrics/vmlet_metrics.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fakes/fake_clock.h"

namespace vmlet::metrics {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// The FakeClock's wall time at construction (2026-11-28T00:00:00Z).
constexpr const char* kStartWall = "1795824000";

std::string Scrape(const VmletMetrics& m) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, m.registry()->Collect());
  return out.str();
}

// The sample lines (no # HELP / # TYPE) of every series whose name is
// exactly `name` (a histogram's are `name`_bucket/_count/_sum). The
// serializer's order within a family is unspecified, so tests compare sets.
std::vector<std::string> Samples(const VmletMetrics& m, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(Scrape(m));
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::string series = line.substr(0, line.find_first_of("{ "));
    if (series == name) out.push_back(line);
  }
  return out;
}

// The vmlet_vm_info sample of prod/`name` on node n1, as the serializer
// writes it.
std::string InfoSample(const std::string& name, const std::string& driver, const std::string& phase,
                       const std::string& desired) {
  return "vmlet_vm_info{desired=\"" + desired + "\",driver=\"" + driver + "\",name=\"" + name +
         "\",namespace=\"prod\",node=\"n1\",phase=\"" + phase + "\"} 1";
}

// The phase transition time sample of prod/`name` on node n1.
std::string TransitionSample(const std::string& name, const std::string& unix_seconds) {
  return "vmlet_vm_phase_transition_timestamp_seconds{name=\"" + name +
         "\",namespace=\"prod\",node=\"n1\"} " + unix_seconds;
}

// The restart series of prod/`name` on node n1: `crashed` restarts for
// reason Crashed, `each_other` for each other reason.
std::vector<std::string> RestartSamples(const std::string& name, int crashed, int each_other = 0) {
  std::vector<std::string> out;
  for (const char* reason :
       {"Crashed", "IdentityMismatch", "Other", "PoweredOff", "ReadinessTimeout"}) {
    out.push_back("vmlet_vm_restarts_total{name=\"" + name +
                  "\",namespace=\"prod\",node=\"n1\",reason=\"" + reason + "\"} " +
                  std::to_string(std::string(reason) == "Crashed" ? crashed : each_other));
  }
  return out;
}

class VmletMetricsTest : public ::testing::Test {
 protected:
  VmletMetrics::Options Defaults() {
    return {"1.2.3", {"fake", "qemu"}, {"syntax", "unknown_field"}, "n1"};
  }

  // web-1 is the one VM, its info series `info` and its last phase change
  // at `transition_seconds` (Unix time).
  void ExpectOnlyWeb(const std::string& info, const std::string& transition_seconds) {
    EXPECT_THAT(Samples(m_, "vmlet_vm_info"), ElementsAre(info));
    EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_timestamp_seconds"),
                ElementsAre(TransitionSample("web-1", transition_seconds)));
  }

  testing::FakeClock clock_;
  VmletMetrics m_{clock_, Defaults()};
  const api::VmKey web_{"prod", "web-1"};
  const api::VmKey db_{"prod", "db-1"};
};

TEST_F(VmletMetricsTest, EveryKnownSeriesExistsAtZeroFromTheStart) {
  EXPECT_THAT(Samples(m_, "vmlet_reconcile_total"),
              UnorderedElementsAre("vmlet_reconcile_total{result=\"success\"} 0",
                                   "vmlet_reconcile_total{result=\"requeue\"} 0",
                                   "vmlet_reconcile_total{result=\"requeue_after\"} 0",
                                   "vmlet_reconcile_total{result=\"error\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_reconcile_duration_seconds_count"),
              ElementsAre("vmlet_reconcile_duration_seconds_count 0"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_depth"), ElementsAre("vmlet_workqueue_depth 0"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_adds_total"),
              ElementsAre("vmlet_workqueue_adds_total 0"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_retries_total"),
              ElementsAre("vmlet_workqueue_retries_total 0"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_queue_duration_seconds_count"),
              ElementsAre("vmlet_workqueue_queue_duration_seconds_count 0"));
  EXPECT_THAT(Samples(m_, "vmlet_last_resync_timestamp_seconds"),
              ElementsAre("vmlet_last_resync_timestamp_seconds 0"));
  EXPECT_THAT(Samples(m_, "vmlet_vmm_identity_mismatch_total"),
              UnorderedElementsAre("vmlet_vmm_identity_mismatch_total{driver=\"fake\"} 0",
                                   "vmlet_vmm_identity_mismatch_total{driver=\"qemu\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_vm_boot_duration_seconds_count"),
              UnorderedElementsAre("vmlet_vm_boot_duration_seconds_count{driver=\"fake\"} 0",
                                   "vmlet_vm_boot_duration_seconds_count{driver=\"qemu\"} 0"));
  // 2 drivers x 8 operations x {ok, error}; 2 x 8 duration histograms.
  std::vector<std::string> ops = Samples(m_, "vmlet_driver_operations_total");
  EXPECT_THAT(ops, SizeIs(32));
  EXPECT_THAT(ops, Each(EndsWith("} 0")));
  for (const char* op :
       {"boot", "observe", "pause", "resume", "shutdown", "kill", "cleanup", "rediscover"}) {
    for (const char* result : {"ok", "error"}) {
      EXPECT_THAT(ops, Contains(std::string("vmlet_driver_operations_total{driver=\"qemu\",op=\"") +
                                op + "\",result=\"" + result + "\"} 0"));
    }
  }
  EXPECT_THAT(Samples(m_, "vmlet_driver_operation_duration_seconds_count"), SizeIs(16));
  // 2 drivers x 6 phases x 5 earlier phases.
  std::vector<std::string> transitions = Samples(m_, "vmlet_vm_phase_transition_seconds_count");
  EXPECT_THAT(transitions, SizeIs(60));
  EXPECT_THAT(transitions, Contains("vmlet_vm_phase_transition_seconds_count{driver=\"fake\","
                                    "last_phase=\"Starting\",phase=\"Ready\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_manifest_errors_total"),
              UnorderedElementsAre("vmlet_manifest_errors_total{reason=\"syntax\"} 0",
                                   "vmlet_manifest_errors_total{reason=\"unknown_field\"} 0",
                                   "vmlet_manifest_errors_total{reason=\"other\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_manifests"),
              UnorderedElementsAre("vmlet_manifests{state=\"valid\"} 0",
                                   "vmlet_manifests{state=\"invalid\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_build_info"),
              ElementsAre("vmlet_build_info{version=\"1.2.3\"} 1"));
  // No VM is known yet.
  EXPECT_THAT(Samples(m_, "vmlet_vm_info"), IsEmpty());
  EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_timestamp_seconds"), IsEmpty());
  EXPECT_THAT(Samples(m_, "vmlet_vm_restarts_total"), IsEmpty());
}

TEST_F(VmletMetricsTest, EachVmHasOneInfoSeriesAndItsPhaseTransitionTime) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  clock_.Advance(std::chrono::seconds(3));
  m_.SetVmStatus(db_, "qemu", "Starting", "Running");

  EXPECT_THAT(Samples(m_, "vmlet_vm_info"),
              UnorderedElementsAre(InfoSample("web-1", "fake", "Ready", "Running"),
                                   InfoSample("db-1", "qemu", "Starting", "Running")));
  EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_timestamp_seconds"),
              UnorderedElementsAre(TransitionSample("web-1", kStartWall),
                                   TransitionSample("db-1", "1795824003")));
}

TEST_F(VmletMetricsTest, PhaseChangeReplacesTheInfoSeriesAndStampsTheTransition) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  clock_.Advance(std::chrono::seconds(5));
  m_.SetVmStatus(web_, "fake", "Paused", "Paused");

  ExpectOnlyWeb(InfoSample("web-1", "fake", "Paused", "Paused"), "1795824005");
}

TEST_F(VmletMetricsTest, SameStatusAgainChangesNothing) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  clock_.Advance(std::chrono::seconds(60));
  m_.SetVmStatus(web_, "fake", "Ready", "Running");

  ExpectOnlyWeb(InfoSample("web-1", "fake", "Ready", "Running"), kStartWall);
}

TEST_F(VmletMetricsTest, DesiredOrDriverChangeReplacesTheSeriesButNotTheTransitionTime) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  clock_.Advance(std::chrono::seconds(7));
  m_.SetVmStatus(web_, "fake", "Ready", "Deleted");
  clock_.Advance(std::chrono::seconds(7));
  m_.SetVmStatus(web_, "qemu", "Ready", "Deleted");

  ExpectOnlyWeb(InfoSample("web-1", "qemu", "Ready", "Deleted"), kStartWall);
}

TEST_F(VmletMetricsTest, ForgottenVmLeavesNoSeriesAndOthersStay) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  m_.SetVmStatus(db_, "fake", "Ready", "Running");
  m_.CountRestart(web_, "the VMM crashed");
  m_.CountRestart(web_, "Stopped");
  m_.CountRestart(db_, "the VMM crashed");

  m_.ForgetVm(web_);

  const std::string text = Scrape(m_);
  EXPECT_THAT(text, Not(HasSubstr("web-1")));
  EXPECT_THAT(Samples(m_, "vmlet_vm_info"), SizeIs(1));
  EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_timestamp_seconds"), SizeIs(1));
  EXPECT_THAT(Samples(m_, "vmlet_vm_restarts_total"),
              UnorderedElementsAreArray(RestartSamples("db-1", 1)));
}

TEST_F(VmletMetricsTest, AVmsRestartSeriesExistAtZeroFromItsFirstStatus) {
  m_.SetVmStatus(web_, "fake", "Starting", "Running");
  EXPECT_THAT(Samples(m_, "vmlet_vm_restarts_total"),
              UnorderedElementsAreArray(RestartSamples("web-1", 0)));
}

TEST_F(VmletMetricsTest, ForgettingAnUnknownVmIsANoOp) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  m_.ForgetVm(db_);
  EXPECT_THAT(Samples(m_, "vmlet_vm_info"), SizeIs(1));
}

TEST_F(VmletMetricsTest, VmSeenAgainAfterBeingForgottenStartsAfresh) {
  m_.SetVmStatus(web_, "fake", "Ready", "Running");
  m_.CountRestart(web_, "the VMM crashed");
  m_.ForgetVm(web_);
  clock_.Advance(std::chrono::seconds(2));
  m_.SetVmStatus(web_, "fake", "Starting", "Running");

  ExpectOnlyWeb(InfoSample("web-1", "fake", "Starting", "Running"), "1795824002");
  // Its restart series start again at 0.
  EXPECT_THAT(Samples(m_, "vmlet_vm_restarts_total"), SizeIs(5));
  EXPECT_THAT(Scrape(m_), Not(HasSubstr("reason=\"Crashed\"} 1")));
}

TEST(RestartReasonLabelTest, FreeTextReasonsMapToAFixedSet) {
  EXPECT_EQ(RestartReasonLabel("the VMM crashed"), "Crashed");
  EXPECT_EQ(RestartReasonLabel("qemu was killed by signal 9 (SIGKILL)"), "Crashed");
  EXPECT_EQ(RestartReasonLabel("the guest kernel panicked: Kernel panic - not syncing"), "Crashed");
  EXPECT_EQ(RestartReasonLabel("Failed"), "Crashed");
  EXPECT_EQ(RestartReasonLabel("Stopped"), "PoweredOff");
  EXPECT_EQ(RestartReasonLabel("no ready marker within 5m"), "ReadinessTimeout");
  EXPECT_EQ(RestartReasonLabel("the VMM exited (its pid now belongs to another process)"),
            "IdentityMismatch");
  EXPECT_EQ(RestartReasonLabel(""), "Other");
}

TEST_F(VmletMetricsTest, RestartsAreCountedPerVmUnderTheBoundedReason) {
  m_.CountRestart(web_, "the VMM crashed");
  m_.CountRestart(web_, "qemu was killed by signal 9 (SIGKILL)");
  m_.CountRestart(web_, "Stopped");
  m_.CountRestart(web_, "no ready marker within 5s");
  m_.CountRestart(web_, "the VMM exited (its pid now belongs to another process)");
  m_.CountRestart(web_, "");

  EXPECT_THAT(Samples(m_, "vmlet_vm_restarts_total"),
              UnorderedElementsAreArray(RestartSamples("web-1", 2, 1)));
}

TEST_F(VmletMetricsTest, BootDurationHistogramHasBucketsFrom50msTo600s) {
  m_.ObserveBoot("fake", 0.3);
  m_.ObserveBoot("fake", 42);

  EXPECT_THAT(Samples(m_, "vmlet_vm_boot_duration_seconds_bucket"),
              UnorderedElementsAre("vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"0.05\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"0.1\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"0.25\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"0.5\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"1\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"2.5\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"5\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"10\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"30\"} 1",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"60\"} 2",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"120\"} 2",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"300\"} 2",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"600\"} 2",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"fake\","
                                   "le=\"+Inf\"} 2",
                                   // qemu's series exists, empty.
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"0.05\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"0.1\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"0.25\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"0.5\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"1\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"2.5\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"5\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"10\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"30\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"60\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"120\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"300\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"600\"} 0",
                                   "vmlet_vm_boot_duration_seconds_bucket{driver=\"qemu\","
                                   "le=\"+Inf\"} 0"));
  EXPECT_THAT(Samples(m_, "vmlet_vm_boot_duration_seconds_count"),
              Contains("vmlet_vm_boot_duration_seconds_count{driver=\"fake\"} 2"));
  EXPECT_THAT(Samples(m_, "vmlet_vm_boot_duration_seconds_sum"),
              Contains("vmlet_vm_boot_duration_seconds_sum{driver=\"fake\"} 42.3"));
}

TEST_F(VmletMetricsTest, PhaseTransitionIsObservedUnderDriverPhaseAndLastPhase) {
  m_.ObservePhaseTransition("qemu", "Starting", "Ready", 1.5);

  EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_seconds_count"),
              Contains("vmlet_vm_phase_transition_seconds_count{driver=\"qemu\","
                       "last_phase=\"Starting\",phase=\"Ready\"} 1"));
  std::vector<std::string> buckets = Samples(m_, "vmlet_vm_phase_transition_seconds_bucket");
  EXPECT_THAT(buckets, Contains("vmlet_vm_phase_transition_seconds_bucket{driver=\"qemu\","
                                "last_phase=\"Starting\",phase=\"Ready\",le=\"1\"} 0"));
  EXPECT_THAT(buckets, Contains("vmlet_vm_phase_transition_seconds_bucket{driver=\"qemu\","
                                "last_phase=\"Starting\",phase=\"Ready\",le=\"2.5\"} 1"));
  EXPECT_THAT(buckets, Contains("vmlet_vm_phase_transition_seconds_bucket{driver=\"qemu\","
                                "last_phase=\"Starting\",phase=\"Ready\",le=\"3600\"} 1"));
}

TEST_F(VmletMetricsTest, UnexpectedDriverOrPhaseDoesNotMakeNewLabelValues) {
  m_.ObservePhaseTransition("", "Starting", "Ready", 1);
  m_.ObservePhaseTransition("fake", "Starting", "Sideways", 1);
  m_.ObserveBoot("cloud-hypervisor", 1);
  m_.CountIdentityMismatch("made-up");

  EXPECT_THAT(Samples(m_, "vmlet_vm_phase_transition_seconds_count"),
              AllOf(Contains("vmlet_vm_phase_transition_seconds_count{driver=\"unknown\","
                             "last_phase=\"Starting\",phase=\"Ready\"} 1"),
                    Contains("vmlet_vm_phase_transition_seconds_count{driver=\"fake\","
                             "last_phase=\"Starting\",phase=\"Unknown\"} 1")));
  EXPECT_THAT(Samples(m_, "vmlet_vm_boot_duration_seconds_count"),
              Contains("vmlet_vm_boot_duration_seconds_count{driver=\"unknown\"} 1"));
  EXPECT_THAT(Samples(m_, "vmlet_vmm_identity_mismatch_total"),
              Contains("vmlet_vmm_identity_mismatch_total{driver=\"unknown\"} 1"));
  const std::string text = Scrape(m_);
  EXPECT_THAT(text, Not(HasSubstr("Sideways")));
  EXPECT_THAT(text, Not(HasSubstr("made-up")));
  EXPECT_THAT(text, Not(HasSubstr("cloud-hypervisor")));
}

TEST_F(VmletMetricsTest, IdentityMismatchesAreCountedPerDriver) {
  m_.CountIdentityMismatch("qemu");
  m_.CountIdentityMismatch("qemu");
  EXPECT_THAT(Samples(m_, "vmlet_vmm_identity_mismatch_total"),
              UnorderedElementsAre("vmlet_vmm_identity_mismatch_total{driver=\"fake\"} 0",
                                   "vmlet_vmm_identity_mismatch_total{driver=\"qemu\"} 2"));
}

TEST_F(VmletMetricsTest, ReconcilePassesAreCountedByResultAndTimed) {
  m_.CountReconcile("success", 0.002);
  m_.CountReconcile("success", 0.004);
  m_.CountReconcile("requeue", 0.001);
  m_.CountReconcile("requeue_after", 0.001);
  m_.CountReconcile("panic", 0.5);  // not a known result: counted as an error

  EXPECT_THAT(Samples(m_, "vmlet_reconcile_total"),
              UnorderedElementsAre("vmlet_reconcile_total{result=\"success\"} 2",
                                   "vmlet_reconcile_total{result=\"requeue\"} 1",
                                   "vmlet_reconcile_total{result=\"requeue_after\"} 1",
                                   "vmlet_reconcile_total{result=\"error\"} 1"));
  EXPECT_THAT(Samples(m_, "vmlet_reconcile_duration_seconds_count"),
              ElementsAre("vmlet_reconcile_duration_seconds_count 5"));
  std::vector<std::string> buckets = Samples(m_, "vmlet_reconcile_duration_seconds_bucket");
  EXPECT_THAT(buckets, Contains("vmlet_reconcile_duration_seconds_bucket{le=\"0.001\"} 2"));
  EXPECT_THAT(buckets, Contains("vmlet_reconcile_duration_seconds_bucket{le=\"0.0025\"} 3"));
  EXPECT_THAT(buckets, Contains("vmlet_reconcile_duration_seconds_bucket{le=\"0.005\"} 4"));
  EXPECT_THAT(buckets, Contains("vmlet_reconcile_duration_seconds_bucket{le=\"60\"} 5"));
  EXPECT_THAT(Scrape(m_), Not(HasSubstr("panic")));
}

TEST_F(VmletMetricsTest, WorkQueueMetricsFollowTheQueue) {
  m_.CountQueueAdd();
  m_.CountQueueAdd();
  m_.CountQueueAdd();
  m_.SetQueueDepth(2);
  m_.CountQueueRetry();
  m_.ObserveQueueDuration(0.0002);

  EXPECT_THAT(Samples(m_, "vmlet_workqueue_adds_total"),
              ElementsAre("vmlet_workqueue_adds_total 3"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_depth"), ElementsAre("vmlet_workqueue_depth 2"));
  EXPECT_THAT(Samples(m_, "vmlet_workqueue_retries_total"),
              ElementsAre("vmlet_workqueue_retries_total 1"));
  std::vector<std::string> buckets = Samples(m_, "vmlet_workqueue_queue_duration_seconds_bucket");
  EXPECT_THAT(buckets, Contains("vmlet_workqueue_queue_duration_seconds_bucket{le=\"0.0001\"} 0"));
  EXPECT_THAT(buckets, Contains("vmlet_workqueue_queue_duration_seconds_bucket{le=\"0.0005\"} 1"));
  EXPECT_THAT(buckets, Contains("vmlet_workqueue_queue_duration_seconds_bucket{le=\"+Inf\"} 1"));
}

TEST_F(VmletMetricsTest, ResyncStampsTheWallTime) {
  clock_.Advance(std::chrono::seconds(60));
  m_.MarkResync();
  EXPECT_THAT(Samples(m_, "vmlet_last_resync_timestamp_seconds"),
              ElementsAre("vmlet_last_resync_timestamp_seconds 1795824060"));
}

TEST_F(VmletMetricsTest, DriverOperationRecordsCountByResultAndDuration) {
  VmletMetrics::Operation boot = m_.DriverOperation("qemu", DriverOp::kBoot);
  boot.Record(true, 0.2);
  boot.Record(false, 0.02);

  std::vector<std::string> ops = Samples(m_, "vmlet_driver_operations_total");
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"qemu\",op=\"boot\","
                            "result=\"ok\"} 1"));
  EXPECT_THAT(ops, Contains("vmlet_driver_operations_total{driver=\"qemu\",op=\"boot\","
                            "result=\"error\"} 1"));
  EXPECT_THAT(Samples(m_, "vmlet_driver_operation_duration_seconds_count"),
              Contains("vmlet_driver_operation_duration_seconds_count{driver=\"qemu\","
                       "op=\"boot\"} 2"));
  std::vector<std::string> buckets = Samples(m_, "vmlet_driver_operation_duration_seconds_bucket");
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"qemu\","
                                "op=\"boot\",le=\"0.025\"} 1"));
  EXPECT_THAT(buckets, Contains("vmlet_driver_operation_duration_seconds_bucket{driver=\"qemu\","
                                "op=\"boot\",le=\"0.25\"} 2"));
}

TEST_F(VmletMetricsTest, ManifestErrorsAreCountedByReason) {
  m_.CountManifestError("syntax");
  m_.CountManifestError("syntax");
  m_.CountManifestError("unknown_field");
  EXPECT_THAT(Samples(m_, "vmlet_manifest_errors_total"),
              UnorderedElementsAre("vmlet_manifest_errors_total{reason=\"syntax\"} 2",
                                   "vmlet_manifest_errors_total{reason=\"unknown_field\"} 1",
                                   "vmlet_manifest_errors_total{reason=\"other\"} 0"));
}

TEST_F(VmletMetricsTest, UnexpectedManifestErrorReasonIsCountedAsOtherWithoutANewSeries) {
  m_.CountManifestError("something-new");
  EXPECT_THAT(Samples(m_, "vmlet_manifest_errors_total"),
              Contains("vmlet_manifest_errors_total{reason=\"other\"} 1"));
  EXPECT_THAT(Scrape(m_), Not(HasSubstr("something-new")));
}

TEST_F(VmletMetricsTest, ManifestCountsAreSet) {
  m_.SetManifestCounts(7, 2);
  EXPECT_THAT(Samples(m_, "vmlet_manifests"),
              UnorderedElementsAre("vmlet_manifests{state=\"valid\"} 7",
                                   "vmlet_manifests{state=\"invalid\"} 2"));
}

}  // namespace
}  // namespace vmlet::metrics
