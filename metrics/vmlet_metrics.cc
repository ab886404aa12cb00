#include "metrics/vmlet_metrics.h"

#include <chrono>
#include <string>

#include "api/vm_state.h"

namespace vmlet::metrics {
namespace {

using prometheus::Histogram;

// Functions, not globals: the vectors are built where a family needs them.
// Boot latency: a microVM in tens of milliseconds, a cloud kernel on KVM in a
// second or two, under TCG in tens of seconds; 10 minutes at worst.
Histogram::BucketBoundaries BootBuckets() {
  return {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};
}
// Time spent in a phase: from Starting's seconds to Ready's hours.
Histogram::BucketBoundaries PhaseBuckets() {
  return {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}
// One reconcile pass, and one driver call: milliseconds normally, up to the
// boot call's timeout.
Histogram::BucketBoundaries CallBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}
// Time a key waits in the work queue: sub-millisecond when idle, seconds
// when the workers are saturated.
Histogram::BucketBoundaries QueueBuckets() {
  return {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60};
}

constexpr std::string_view kUnknownDriver = "unknown";

constexpr std::array<api::VmState::Phase, 6> kPhases = {
    api::VmState::Phase::kStarting, api::VmState::Phase::kRunning, api::VmState::Phase::kReady,
    api::VmState::Phase::kPaused,   api::VmState::Phase::kStopped, api::VmState::Phase::kFailed};

constexpr std::array<DriverOp, kDriverOpCount> kDriverOps = {
    DriverOp::kBoot,     DriverOp::kObserve, DriverOp::kPause,   DriverOp::kResume,
    DriverOp::kShutdown, DriverOp::kKill,    DriverOp::kCleanup, DriverOp::kRediscover};

bool IsPhase(std::string_view phase) {
  for (api::VmState::Phase p : kPhases) {
    if (api::PhaseName(p) == phase) return true;
  }
  return false;
}

std::string PhaseLabel(std::string_view phase) {
  return IsPhase(phase) ? std::string(phase) : "Unknown";
}

prometheus::Labels VmLabels(const api::VmKey& key, const std::string& node) {
  return {{"namespace", key.ns}, {"name", key.name}, {"node", node}};
}

}  // namespace

std::string_view DriverOpName(DriverOp op) {
  switch (op) {
    case DriverOp::kBoot:
      return "boot";
    case DriverOp::kObserve:
      return "observe";
    case DriverOp::kPause:
      return "pause";
    case DriverOp::kResume:
      return "resume";
    case DriverOp::kShutdown:
      return "shutdown";
    case DriverOp::kKill:
      return "kill";
    case DriverOp::kCleanup:
      return "cleanup";
    case DriverOp::kRediscover:
      return "rediscover";
  }
  return "unknown";
}

// Every value RestartReasonLabel() returns.
constexpr std::string_view kRestartReasonLabels[] = {"Crashed", "PoweredOff", "ReadinessTimeout",
                                                     "IdentityMismatch", "Other"};

std::string_view RestartReasonLabel(std::string_view reason) {
  // The texts come from the reconciler (controller/reconciler.cc): the exit
  // phase when a VMM left no reason, its readiness timeout, its identity
  // mismatch; everything else is a driver's description of a failed exit.
  if (reason.empty()) return "Other";
  if (reason == api::PhaseName(api::VmState::Phase::kStopped)) return "PoweredOff";
  if (reason.starts_with("no ready marker within")) return "ReadinessTimeout";
  if (reason.find("pid now belongs to another process") != std::string_view::npos) {
    return "IdentityMismatch";
  }
  return "Crashed";
}

void VmletMetrics::Operation::Record(bool ok, double seconds) const {
  (ok ? ok_ : error_)->Increment();
  duration_->Observe(seconds);
}

VmletMetrics::VmletMetrics(const api::Clock& clock, Options options)
    : clock_(clock),
      drivers_(options.drivers.begin(), options.drivers.end()),
      node_(options.node),
      registry_(std::make_shared<prometheus::Registry>()),
      vm_info_(prometheus::BuildGauge()
                   .Name("vmlet_vm_info")
                   .Help("Always 1, one series per VM: its driver, observed phase and desired "
                         "state. Count VMs with sum by (phase) (vmlet_vm_info).")
                   .Register(*registry_)),
      vm_transition_timestamp_(
          prometheus::BuildGauge()
              .Name("vmlet_vm_phase_transition_timestamp_seconds")
              .Help("Unix time of the VM's last phase change (or of when this vmlet first saw "
                    "its phase).")
              .Register(*registry_)),
      vm_boot_duration_(prometheus::BuildHistogram()
                            .Name("vmlet_vm_boot_duration_seconds")
                            .Help("Seconds from the VMM spawn request to the guest's ready marker.")
                            .Register(*registry_)),
      vm_phase_transition_(prometheus::BuildHistogram()
                               .Name("vmlet_vm_phase_transition_seconds")
                               .Help("Seconds a VM spent in last_phase before it entered phase.")
                               .Register(*registry_)),
      vm_restarts_(prometheus::BuildCounter()
                       .Name("vmlet_vm_restarts_total")
                       .Help("VMs booted again after their VMM ended unasked, by why it ended.")
                       .Register(*registry_)),
      reconcile_total_(prometheus::BuildCounter()
                           .Name("vmlet_reconcile_total")
                           .Help("Reconcile passes, by result.")
                           .Register(*registry_)),
      reconcile_duration_(prometheus::BuildHistogram()
                              .Name("vmlet_reconcile_duration_seconds")
                              .Help("Seconds one reconcile pass took.")
                              .Register(*registry_)),
      queue_depth_(prometheus::BuildGauge()
                       .Name("vmlet_workqueue_depth")
                       .Help("VM keys ready to be reconciled and waiting for a worker.")
                       .Register(*registry_)),
      queue_adds_(prometheus::BuildCounter()
                      .Name("vmlet_workqueue_adds_total")
                      .Help("VM keys that became pending in the work queue.")
                      .Register(*registry_)),
      queue_retries_(prometheus::BuildCounter()
                         .Name("vmlet_workqueue_retries_total")
                         .Help("VM keys requeued with backoff after a failed reconcile.")
                         .Register(*registry_)),
      queue_duration_(prometheus::BuildHistogram()
                          .Name("vmlet_workqueue_queue_duration_seconds")
                          .Help("Seconds a VM key waited in the work queue before a worker "
                                "took it.")
                          .Register(*registry_)),
      driver_operations_(prometheus::BuildCounter()
                             .Name("vmlet_driver_operations_total")
                             .Help("Driver calls, by driver, operation and result (ok, error).")
                             .Register(*registry_)),
      driver_operation_duration_(prometheus::BuildHistogram()
                                     .Name("vmlet_driver_operation_duration_seconds")
                                     .Help("Seconds one driver call took.")
                                     .Register(*registry_)),
      identity_mismatch_(prometheus::BuildCounter()
                             .Name("vmlet_vmm_identity_mismatch_total")
                             .Help("Recorded VMMs whose pid no longer names the same process "
                                   "(never signalled; the VM counts as exited).")
                             .Register(*registry_)),
      manifest_errors_(prometheus::BuildCounter()
                           .Name("vmlet_manifest_errors_total")
                           .Help("Manifest errors found, by kind of mistake.")
                           .Register(*registry_)),
      manifests_(prometheus::BuildGauge()
                     .Name("vmlet_manifests")
                     .Help("VMs in the manifest directory whose manifest is valid or invalid.")
                     .Register(*registry_)),
      last_resync_(prometheus::BuildGauge()
                       .Name("vmlet_last_resync_timestamp_seconds")
                       .Help("Unix time at which every VM was last queued for a reconcile "
                             "(0: not yet).")
                       .Register(*registry_)),
      build_info_(prometheus::BuildGauge()
                      .Name("vmlet_build_info")
                      .Help("Always 1; the version label says which vmlet is running.")
                      .Register(*registry_)) {
  for (size_t i = 0; i < kReconcileResults.size(); ++i) {
    reconcile_results_[i] = &reconcile_total_.Add({{"result", std::string(kReconcileResults[i])}});
  }
  reconcile_histogram_ = &reconcile_duration_.Add({}, CallBuckets());
  depth_ = &queue_depth_.Add({});
  adds_ = &queue_adds_.Add({});
  retries_ = &queue_retries_.Add({});
  queue_histogram_ = &queue_duration_.Add({}, QueueBuckets());
  resync_ = &last_resync_.Add({});

  for (const std::string& driver : drivers_) {
    vm_boot_duration_.Add({{"driver", driver}}, BootBuckets());
    identity_mismatch_.Add({{"driver", driver}});
    for (api::VmState::Phase last : kPhases) {
      for (api::VmState::Phase phase : kPhases) {
        if (phase == last) continue;
        vm_phase_transition_.Add({{"driver", driver},
                                  {"phase", std::string(api::PhaseName(phase))},
                                  {"last_phase", std::string(api::PhaseName(last))}},
                                 PhaseBuckets());
      }
    }
    for (DriverOp op : kDriverOps) DriverOperation(driver, op);
  }

  for (const std::string& reason : options.manifest_error_reasons) {
    manifest_errors_.Add({{"reason", reason}});
  }
  manifest_errors_.Add({{"reason", "other"}});
  manifests_.Add({{"state", "valid"}});
  manifests_.Add({{"state", "invalid"}});
  build_info_.Add({{"version", options.version}}).Set(1);
}

std::string VmletMetrics::DriverLabel(std::string_view driver) const {
  return drivers_.contains(driver) ? std::string(driver) : std::string(kUnknownDriver);
}

double VmletMetrics::WallSeconds() const {
  return std::chrono::duration<double>(clock_.WallNow().time_since_epoch()).count();
}

void VmletMetrics::SetVmStatus(const api::VmKey& key, std::string_view driver,
                               std::string_view phase, std::string_view desired) {
  std::lock_guard lock(mu_);
  VmSeries& vm = vms_[key];
  const bool first = vm.info == nullptr;
  const bool phase_changed = first || vm.phase != phase;
  if (first || vm.driver != driver || phase_changed || vm.desired != desired) {
    if (vm.info) vm_info_.Remove(vm.info);
    vm.driver = driver;
    vm.phase = phase;
    vm.desired = desired;
    prometheus::Labels labels = VmLabels(key, node_);
    labels.emplace("driver", vm.driver);
    labels.emplace("phase", vm.phase);
    labels.emplace("desired", vm.desired);
    vm.info = &vm_info_.Add(labels);
    vm.info->Set(1);
  }
  if (phase_changed) {
    if (!vm.transition) vm.transition = &vm_transition_timestamp_.Add(VmLabels(key, node_));
    vm.transition->Set(WallSeconds());
  }
  if (first) {
    // The VM's restart series exist at 0 from the moment it is known, so
    // that increase() and rate() count its first restart too (a series that
    // appears at 1 shows no increase).
    for (std::string_view reason : kRestartReasonLabels) {
      prometheus::Counter*& counter = vm.restarts[reason];
      if (!counter) {
        prometheus::Labels labels = VmLabels(key, node_);
        labels.emplace("reason", std::string(reason));
        counter = &vm_restarts_.Add(labels);
      }
    }
  }
}

void VmletMetrics::CountRestart(const api::VmKey& key, std::string_view reason) {
  const std::string_view label = RestartReasonLabel(reason);
  std::lock_guard lock(mu_);
  VmSeries& vm = vms_[key];
  prometheus::Counter*& counter = vm.restarts[label];
  if (!counter) {
    prometheus::Labels labels = VmLabels(key, node_);
    labels.emplace("reason", std::string(label));
    counter = &vm_restarts_.Add(labels);
  }
  counter->Increment();
}

void VmletMetrics::ForgetVm(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(key);
  if (it == vms_.end()) return;
  VmSeries& vm = it->second;
  if (vm.info) vm_info_.Remove(vm.info);
  if (vm.transition) vm_transition_timestamp_.Remove(vm.transition);
  for (auto& [reason, counter] : vm.restarts) vm_restarts_.Remove(counter);
  vms_.erase(it);
}

void VmletMetrics::ObservePhaseTransition(std::string_view driver, std::string_view from,
                                          std::string_view to, double seconds) {
  vm_phase_transition_
      .Add({{"driver", DriverLabel(driver)},
            {"phase", PhaseLabel(to)},
            {"last_phase", PhaseLabel(from)}},
           PhaseBuckets())
      .Observe(seconds);
}

void VmletMetrics::ObserveBoot(std::string_view driver, double seconds) {
  vm_boot_duration_.Add({{"driver", DriverLabel(driver)}}, BootBuckets()).Observe(seconds);
}

void VmletMetrics::CountIdentityMismatch(std::string_view driver) {
  identity_mismatch_.Add({{"driver", DriverLabel(driver)}}).Increment();
}

void VmletMetrics::CountReconcile(std::string_view result, double seconds) {
  size_t index = kReconcileResults.size() - 1;  // "error"
  for (size_t i = 0; i < kReconcileResults.size(); ++i) {
    if (kReconcileResults[i] == result) index = i;
  }
  reconcile_results_[index]->Increment();
  reconcile_histogram_->Observe(seconds);
}

void VmletMetrics::SetQueueDepth(size_t depth) { depth_->Set(static_cast<double>(depth)); }
void VmletMetrics::CountQueueAdd() { adds_->Increment(); }
void VmletMetrics::CountQueueRetry() { retries_->Increment(); }
void VmletMetrics::ObserveQueueDuration(double seconds) { queue_histogram_->Observe(seconds); }
void VmletMetrics::MarkResync() { resync_->Set(WallSeconds()); }

void VmletMetrics::CountManifestError(std::string_view reason) {
  const std::string label(reason);
  // Has() avoids creating an unbounded set of series from unexpected input.
  if (manifest_errors_.Has({{"reason", label}})) {
    manifest_errors_.Add({{"reason", label}}).Increment();
  } else {
    manifest_errors_.Add({{"reason", "other"}}).Increment();
  }
}

void VmletMetrics::SetManifestCounts(double valid, double invalid) {
  manifests_.Add({{"state", "valid"}}).Set(valid);
  manifests_.Add({{"state", "invalid"}}).Set(invalid);
}

VmletMetrics::Operation VmletMetrics::DriverOperation(std::string_view driver, DriverOp op) {
  const std::string name = DriverLabel(driver);
  const std::string op_name(DriverOpName(op));
  Operation operation;
  operation.ok_ = &driver_operations_.Add({{"driver", name}, {"op", op_name}, {"result", "ok"}});
  operation.error_ =
      &driver_operations_.Add({{"driver", name}, {"op", op_name}, {"result", "error"}});
  operation.duration_ =
      &driver_operation_duration_.Add({{"driver", name}, {"op", op_name}}, CallBuckets());
  return operation;
}

}  // namespace vmlet::metrics
