#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/clock.h"
#include "drivers/vm_driver.h"
#include "metrics/vmlet_metrics.h"

namespace vmlet::metrics {

// A VmDriver that forwards every call to another one, unchanged, and counts
// and times the calls that reach the hypervisor or the host (DriverOp: boot,
// observe, pause, resume, shutdown, kill, cleanup, rediscover) as
// vmlet_driver_operations_total{driver,op,result="ok"|"error"} and
// vmlet_driver_operation_duration_seconds{driver,op}, on `clock`'s monotonic
// time. `driver` is the inner driver's name(). A call fails ("error") when it
// returns a non-OK status; Rediscover() finding nothing is "ok".
//
// CheckSpec(), ExitState(), proc_fs() and SetChangeListener() are forwarded
// without being counted: they are local bookkeeping.
//
// Construction creates the driver's series at 0. Thread-safe as the inner
// driver is.
class MeteredDriver final : public drivers::VmDriver {
 public:
  // `inner`, `metrics` and `clock` must outlive this.
  MeteredDriver(drivers::VmDriver& inner, VmletMetrics& metrics, const api::Clock& clock);

  std::string_view name() const override { return inner_.name(); }
  std::vector<api::FieldError> CheckSpec(const api::VmSpec& spec) const override;
  api::StatusOr<drivers::BootResult> Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                          drivers::Deadline deadline) override;
  api::StatusOr<drivers::Observation> Observe(const drivers::ConfirmedVmm& vmm,
                                              drivers::Deadline deadline) override;
  api::Status Pause(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override;
  api::Status Resume(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override;
  api::Status Shutdown(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override;
  api::Status Kill(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) override;
  drivers::VmmExit ExitState(const drivers::VmmHandle& handle) override;
  api::Status Cleanup(const drivers::VmmHandle& handle, drivers::Deadline deadline) override;
  api::StatusOr<std::optional<drivers::VmmHandle>> Rediscover(const std::string& vm_dir) override;
  const drivers::ProcFs& proc_fs() const override { return inner_.proc_fs(); }
  void SetChangeListener(ChangeListener listener) override;

 private:
  // Runs `call`, records its outcome under `op`, returns what it returned.
  template <typename Call>
  auto Timed(DriverOp op, Call&& call);

  drivers::VmDriver& inner_;
  const api::Clock& clock_;
  std::array<VmletMetrics::Operation, kDriverOpCount> ops_;
};

}  // namespace vmlet::metrics
