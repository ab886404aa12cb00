#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "api/clock.h"
#include "api/vm_key.h"

namespace vmlet::metrics {

// The drivers::VmDriver calls that are counted and timed (MeteredDriver): the
// ones that reach the hypervisor or the host.
enum class DriverOp { kBoot, kObserve, kPause, kResume, kShutdown, kKill, kCleanup, kRediscover };
inline constexpr size_t kDriverOpCount = 8;

// The `op` label: "boot", "observe", "pause", "resume", "shutdown", "kill",
// "cleanup", "rediscover".
std::string_view DriverOpName(DriverOp op);

// The bounded `reason` label of vmlet_vm_restarts_total for the free-text
// reason the reconciler gives a restart (ReconcilerHooks::restarted: the
// previous VMM's exit reason, else its exit phase). The values are the event
// reasons the reconciler emitted when that VMM ended:
//   "Stopped" (the guest powered off)                        -> "PoweredOff"
//   "no ready marker within ..." (readiness timeout)         -> "ReadinessTimeout"
//   "... pid now belongs to another process ..."             -> "IdentityMismatch"
//   any other non-empty text (a Failed exit: crash, kill)     -> "Crashed"
//   ""                                                        -> "Other"
std::string_view RestartReasonLabel(std::string_view reason);

// Every metric family vmlet exports (docs/metrics.md; the per-VM ones also carry
// `node`), in one prometheus-cpp
// registry that the exposer (MetricsEndpoint) or a test's TextSerializer
// collects.
//
// Label series that can be known at start exist from the start at 0 (driver x
// op x result, reconcile results, manifest error reasons, per-driver boot,
// phase-transition and identity-mismatch series), so a `rate()` or an alert
// never sees a series appear out of nowhere. Per-VM series
// (namespace/name, the only unbounded labels) exist while the VM is known:
// vmlet_vm_info and the phase-transition timestamp from its first reported
// status, a restart reason's series from the VM's first restart for that
// reason; ForgetVm() removes all of them. Every other label is bounded: a
// driver not named in Options::drivers is reported as driver="unknown", a
// reconcile result or manifest error reason outside the known set as
// "error" / "other".
//
// Thread-safe.
class VmletMetrics {
 public:
  struct Options {
    // The build_info `version` label.
    std::string version;
    // The drivers this vmlet carries (the `driver` label of the aggregate
    // families). Default: none.
    std::vector<std::string> drivers;
    // Every value the `reason` label of vmlet_manifest_errors_total can take
    // ("other" is always added).
    std::vector<std::string> manifest_error_reasons;
    // The `node` label of every per-VM series (vmlet_vm_info, the phase
    // transition timestamp, vmlet_vm_restarts_total): this vmlet's
    // --node-name, so that a fleet's VMs can be told apart by node whatever
    // the scrape's instance label says (docs/fleet.md).
    std::string node;
  };

  // The `result` label values of vmlet_reconcile_total.
  static constexpr std::array<std::string_view, 4> kReconcileResults = {"success", "requeue",
                                                                        "requeue_after", "error"};

  // Count and duration of one driver operation for one driver, resolved once
  // (see DriverOperation) so that recording costs two atomic updates.
  class Operation {
   public:
    void Record(bool ok, double seconds) const;

   private:
    friend class VmletMetrics;
    prometheus::Counter* ok_ = nullptr;
    prometheus::Counter* error_ = nullptr;
    prometheus::Histogram* duration_ = nullptr;
  };

  // `clock` gives the wall time of phase transitions and resyncs; it must
  // outlive this.
  VmletMetrics(const api::Clock& clock, Options options);

  VmletMetrics(const VmletMetrics&) = delete;
  VmletMetrics& operator=(const VmletMetrics&) = delete;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // --- Per VM (ReconcilerHooks) ---

  // The VM's driver, phase and desired state as its status shows them now.
  // Keeps exactly one vmlet_vm_info{namespace,name,driver,phase,desired}
  // series = 1 for the VM: a change of any label replaces the old series. A
  // change of phase (or the first report of the VM) sets
  // vmlet_vm_phase_transition_timestamp_seconds to the clock's wall time.
  void SetVmStatus(const api::VmKey& key, std::string_view driver, std::string_view phase,
                   std::string_view desired);
  // vmlet_vm_restarts_total{namespace,name,reason=RestartReasonLabel(reason)}.
  void CountRestart(const api::VmKey& key, std::string_view reason);
  // The VM left this node's care: removes every series naming it.
  void ForgetVm(const api::VmKey& key);
  // vmlet_vm_phase_transition_seconds{driver,phase=to,last_phase=from}:
  // `seconds` spent in `from`.
  void ObservePhaseTransition(std::string_view driver, std::string_view from, std::string_view to,
                              double seconds);
  // vmlet_vm_boot_duration_seconds{driver}: VMM spawn requested -> guest ready.
  void ObserveBoot(std::string_view driver, double seconds);
  // vmlet_vmm_identity_mismatch_total{driver}.
  void CountIdentityMismatch(std::string_view driver);

  // --- Controller ---

  // vmlet_reconcile_total{result} and vmlet_reconcile_duration_seconds.
  // `result` is one of kReconcileResults; anything else counts as "error".
  void CountReconcile(std::string_view result, double seconds);
  // vmlet_workqueue_* (WorkQueueMetrics).
  void SetQueueDepth(size_t depth);
  void CountQueueAdd();
  void CountQueueRetry();
  void ObserveQueueDuration(double seconds);
  // vmlet_last_resync_timestamp_seconds = the clock's wall time now.
  void MarkResync();

  // --- Manifests ---

  // vmlet_manifest_errors_total{reason}: one manifest error found. An unknown
  // reason is counted under "other".
  void CountManifestError(std::string_view reason);
  // vmlet_manifests{state="valid"|"invalid"}: VMs whose current manifest is
  // valid, and VMs whose manifest is invalid (they keep their last good spec).
  void SetManifestCounts(double valid, double invalid);

  // --- Drivers ---

  // The series of `op` for `driver` (created at 0 if new; a driver outside
  // Options::drivers is "unknown").
  Operation DriverOperation(std::string_view driver, DriverOp op);

 private:
  struct VmSeries {
    std::string driver, phase, desired;
    prometheus::Gauge* info = nullptr;
    prometheus::Gauge* transition = nullptr;
    std::map<std::string_view, prometheus::Counter*> restarts;  // by reason label
  };

  // `driver` if it is one of Options::drivers, else "unknown".
  std::string DriverLabel(std::string_view driver) const;
  double WallSeconds() const;

  const api::Clock& clock_;
  const std::set<std::string, std::less<>> drivers_;
  const std::string node_;
  std::shared_ptr<prometheus::Registry> registry_;

  prometheus::Family<prometheus::Gauge>& vm_info_;
  prometheus::Family<prometheus::Gauge>& vm_transition_timestamp_;
  prometheus::Family<prometheus::Histogram>& vm_boot_duration_;
  prometheus::Family<prometheus::Histogram>& vm_phase_transition_;
  prometheus::Family<prometheus::Counter>& vm_restarts_;
  prometheus::Family<prometheus::Counter>& reconcile_total_;
  prometheus::Family<prometheus::Histogram>& reconcile_duration_;
  prometheus::Family<prometheus::Gauge>& queue_depth_;
  prometheus::Family<prometheus::Counter>& queue_adds_;
  prometheus::Family<prometheus::Counter>& queue_retries_;
  prometheus::Family<prometheus::Histogram>& queue_duration_;
  prometheus::Family<prometheus::Counter>& driver_operations_;
  prometheus::Family<prometheus::Histogram>& driver_operation_duration_;
  prometheus::Family<prometheus::Counter>& identity_mismatch_;
  prometheus::Family<prometheus::Counter>& manifest_errors_;
  prometheus::Family<prometheus::Gauge>& manifests_;
  prometheus::Family<prometheus::Gauge>& last_resync_;
  prometheus::Family<prometheus::Gauge>& build_info_;

  // Resolved once: the label sets of these never change.
  std::array<prometheus::Counter*, kReconcileResults.size()> reconcile_results_{};
  prometheus::Histogram* reconcile_histogram_ = nullptr;
  prometheus::Gauge* depth_ = nullptr;
  prometheus::Counter* adds_ = nullptr;
  prometheus::Counter* retries_ = nullptr;
  prometheus::Histogram* queue_histogram_ = nullptr;
  prometheus::Gauge* resync_ = nullptr;

  std::mutex mu_;
  std::map<api::VmKey, VmSeries> vms_;  // guarded by mu_
};

}  // namespace vmlet::metrics
