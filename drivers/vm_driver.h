#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/validation.h"
#include "api/vm_key.h"
#include "api/vm_spec.h"
#include "api/vm_state.h"
#include "drivers/boot_refusal.h"
#include "drivers/confirmed_vmm.h"
#include "drivers/proc_fs.h"
#include "drivers/vmm_handle.h"

namespace vmlet::drivers {

// A point on the monotonic clock by which a driver call must have returned.
using Deadline = api::Clock::MonotonicTime;

// What a driver sees of a live VMM.
struct Observation {
  api::VmState state;
  // When the guest's ready marker was seen, on the monotonic clock, if the
  // state is Ready and the driver knows.
  std::optional<api::Clock::MonotonicTime> ready_at;
  // When the driver cannot announce the next change itself (see
  // SetChangeListener), how soon to look again.
  std::optional<std::chrono::milliseconds> recheck_after;
};

// What Boot() did: launched the VM's VMM, or refused to (BootRefusal).
class BootResult {
 public:
  static BootResult Launched(VmmHandle handle) { return BootResult(std::move(handle)); }
  static BootResult Refused(BootRefusal refusal) { return BootResult(std::move(refusal)); }

  // The launched VMM; nullptr when the boot was refused.
  const VmmHandle* handle() const { return std::get_if<VmmHandle>(&value_); }
  // Why no VMM was launched; nullptr when one was.
  const BootRefusal* refusal() const { return std::get_if<BootRefusal>(&value_); }

  friend bool operator==(const BootResult&, const BootResult&) = default;

 private:
  explicit BootResult(std::variant<VmmHandle, BootRefusal> value) : value_(std::move(value)) {}

  std::variant<VmmHandle, BootRefusal> value_;
};

// How a VMM that is no longer running ended: the VM's state after it
// (Stopped, or Failed{reason}), or, for a VMM that ended during its start-up
// because its boot was refused, the refusal (the VM is then still Starting:
// it waits for the cause to clear).
class VmmExit {
 public:
  VmmExit(api::VmState state) : state_(std::move(state)) {}  // NOLINT: implicit by design
  VmmExit(BootRefusal refusal)                               // NOLINT: implicit by design
      : state_(api::VmState::Starting()), refusal_(std::move(refusal)) {}

  const api::VmState& state() const { return state_; }
  // Set when the boot was refused; nullptr when the VMM ran and ended.
  const BootRefusal* refusal() const { return refusal_ ? &*refusal_ : nullptr; }

  friend bool operator==(const VmmExit&, const VmmExit&) = default;

 private:
  api::VmState state_;
  std::optional<BootRefusal> refusal_;
};

inline std::ostream& operator<<(std::ostream& os, const VmmExit& exit) {
  if (exit.refusal()) return os << "boot refused (" << *exit.refusal() << ")";
  return os << exit.state();
}

// One hypervisor technology (docs/drivers.md): QEMU, Cloud Hypervisor, the fake.
//
// Contract for every call:
// - Idempotent: repeating a call that succeeded succeeds and changes nothing
//   (pausing a paused VM, killing a gone VMM).
// - Bounded: it returns by `deadline`, with DeadlineExceeded if the VMM did
//   not answer in time.
// - Errors say whether a retry can help: Unavailable / DeadlineExceeded are
//   retryable (the VMM is busy, a socket is not up yet); InvalidArgument /
//   FailedPrecondition are not (a kernel that does not exist, a spec the
//   driver cannot honour).
// - Acts only on a ConfirmedVmm: the caller has verified the process's
//   identity just before (VmmIdentity).
//
// Thread-safe: calls for different VMs may run concurrently; calls for one VM
// are never concurrent (the work queue gives a key to one worker at a time).
class VmDriver {
 public:
  // Told the VM directory of a VM whose state may have changed (the guest
  // printed its ready marker, the VMM reported an event).
  using ChangeListener = std::function<void(const std::string& vm_dir)>;

  virtual ~VmDriver() = default;

  // The driver's name as manifests spell it.
  virtual std::string_view name() const = 0;

  // What this driver cannot honour in `spec`, as field errors (empty: fine).
  virtual std::vector<api::FieldError> CheckSpec(const api::VmSpec& spec) const = 0;

  // Launches the VM's VMM, with every file it uses under `vm_dir` (which
  // exists). Returns as soon as the VMM process exists: the caller records
  // the handle durably before anything else. Does not wait for the guest.
  // A boot refused for a cause that is no fault of the guest (a disk image
  // another process holds locked, an image the VMM's user cannot open) is a
  // BootResult::Refused, not an error; nothing of it is left running.
  virtual api::StatusOr<BootResult> Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                         Deadline deadline) = 0;

  // The state of a live VMM: Starting, Running, Ready{ip} or Paused.
  virtual api::StatusOr<Observation> Observe(const ConfirmedVmm& vmm, Deadline deadline) = 0;

  virtual api::Status Pause(const ConfirmedVmm& vmm, Deadline deadline) = 0;
  virtual api::Status Resume(const ConfirmedVmm& vmm, Deadline deadline) = 0;

  // Asks the guest to power off (ACPI power button). Returns once the request
  // is delivered, not when the guest is off: the caller observes, and forces
  // with Kill() after the VM's stop grace period.
  virtual api::Status Shutdown(const ConfirmedVmm& vmm, Deadline deadline) = 0;

  // Forces the VMM to exit: the hypervisor's own forced stop, then SIGKILL
  // through the pidfd. OK once the process is gone.
  virtual api::Status Kill(const ConfirmedVmm& vmm, Deadline deadline) = 0;

  // How a VMM that is no longer running ended, from what it left behind:
  // Stopped when the guest powered off, Failed{reason} otherwise (crashed,
  // killed from outside, unknown); a BootRefusal when it exited during its
  // start-up because a disk image was locked.
  virtual VmmExit ExitState(const VmmHandle& handle) = 0;

  // Releases what the VM held on the host besides the VMM process: sockets,
  // sidecars, the driver's own bookkeeping. Idempotent; called after the VMM
  // is gone.
  virtual api::Status Cleanup(const VmmHandle& handle, Deadline deadline) = 0;

  // Finds a live VMM of this driver whose files are in `vm_dir` when vmlet
  // has no usable record of it (record.json was corrupt, or vmlet died
  // between launching the VMM and recording it), so that it is adopted
  // instead of booted twice. The handle is then confirmed like any other.
  virtual api::StatusOr<std::optional<VmmHandle>> Rediscover(const std::string& vm_dir) = 0;

  // The process table through which this driver's VMMs are identified: the
  // host's /proc for real hypervisors, the fake driver's own table for it.
  virtual const ProcFs& proc_fs() const = 0;

  // Where to report changes the driver notices by itself. Optional.
  // NOLINTNEXTLINE(performance-unnecessary-value-param): a sink; overrides keep it.
  virtual void SetChangeListener(ChangeListener /*listener*/) {}
};

using VmDriverPtr = std::unique_ptr<VmDriver>;

}  // namespace vmlet::drivers
