#include "metrics/metered_driver.h"

#include <chrono>
#include <utility>

namespace vmlet::metrics {
namespace {

bool Succeeded(const api::Status& status) { return status.ok(); }
template <typename T>
bool Succeeded(const api::StatusOr<T>& result) {
  return result.ok();
}
// A refused boot launched nothing: it counts as a failed boot.
bool Succeeded(const api::StatusOr<drivers::BootResult>& result) {
  return result.ok() && result->refusal() == nullptr;
}

}  // namespace

MeteredDriver::MeteredDriver(drivers::VmDriver& inner, VmletMetrics& metrics,
                             const api::Clock& clock)
    : inner_(inner), clock_(clock) {
  for (size_t i = 0; i < kDriverOpCount; ++i) {
    ops_[i] = metrics.DriverOperation(inner_.name(), static_cast<DriverOp>(i));
  }
}

template <typename Call>
auto MeteredDriver::Timed(DriverOp op, Call&& call) {
  const api::Clock::MonotonicTime start = clock_.MonotonicNow();
  auto result = std::forward<Call>(call)();
  const double seconds = std::chrono::duration<double>(clock_.MonotonicNow() - start).count();
  ops_[static_cast<size_t>(op)].Record(Succeeded(result), seconds);
  return result;
}

std::vector<api::FieldError> MeteredDriver::CheckSpec(const api::VmSpec& spec) const {
  return inner_.CheckSpec(spec);
}

api::StatusOr<drivers::BootResult> MeteredDriver::Boot(const api::VmSpec& spec,
                                                       const std::string& vm_dir,
                                                       drivers::Deadline deadline) {
  return Timed(DriverOp::kBoot, [&] { return inner_.Boot(spec, vm_dir, deadline); });
}

api::StatusOr<drivers::Observation> MeteredDriver::Observe(const drivers::ConfirmedVmm& vmm,
                                                           drivers::Deadline deadline) {
  return Timed(DriverOp::kObserve, [&] { return inner_.Observe(vmm, deadline); });
}

api::Status MeteredDriver::Pause(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) {
  return Timed(DriverOp::kPause, [&] { return inner_.Pause(vmm, deadline); });
}

api::Status MeteredDriver::Resume(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) {
  return Timed(DriverOp::kResume, [&] { return inner_.Resume(vmm, deadline); });
}

api::Status MeteredDriver::Shutdown(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) {
  return Timed(DriverOp::kShutdown, [&] { return inner_.Shutdown(vmm, deadline); });
}

api::Status MeteredDriver::Kill(const drivers::ConfirmedVmm& vmm, drivers::Deadline deadline) {
  return Timed(DriverOp::kKill, [&] { return inner_.Kill(vmm, deadline); });
}

drivers::VmmExit MeteredDriver::ExitState(const drivers::VmmHandle& handle) {
  return inner_.ExitState(handle);
}

api::Status MeteredDriver::Cleanup(const drivers::VmmHandle& handle, drivers::Deadline deadline) {
  return Timed(DriverOp::kCleanup, [&] { return inner_.Cleanup(handle, deadline); });
}

api::StatusOr<std::optional<drivers::VmmHandle>> MeteredDriver::Rediscover(
    const std::string& vm_dir) {
  return Timed(DriverOp::kRediscover, [&] { return inner_.Rediscover(vm_dir); });
}

void MeteredDriver::SetChangeListener(ChangeListener listener) {
  inner_.SetChangeListener(std::move(listener));
}

}  // namespace vmlet::metrics
