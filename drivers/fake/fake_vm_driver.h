#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "api/clock.h"
#include "api/vm_key.h"
#include "drivers/proc_fs.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// Faults the fake driver injects into one VM, for tests.
struct FakeFaults {
  int fail_boots = 0;  // the next this many Boot() calls fail (Unavailable)
  // Every boot of the VM crashes this long after it starts (the VMM "dies").
  std::optional<std::chrono::milliseconds> crash_after;
  bool fail_pause = false;           // Pause() fails (Unavailable)
  bool ignore_power_button = false;  // Shutdown() is delivered but the guest stays on
  // The next this many boots find a disk image locked by another process as
  // QEMU does: the VMM starts and exits at once; ExitState() says DiskLocked.
  int disk_locked_boots = 0;
  // The next this many Boot() calls are refused with DiskLocked at once, as
  // Cloud Hypervisor's vm.boot refuses.
  int disk_locked_boot_errors = 0;
  // The next this many Boot() calls find the kernel unreadable
  // (ImageNotReadable), as both real drivers check before launching.
  int image_not_readable_boot_errors = 0;
};

// The `fake` driver (docs/drivers.md): VMs without a hypervisor, so the controller
// can be driven to 10,000 VMs on one small machine and every behaviour proven
// before real VMMs arrive.
//
// Its VMMs behave like real ones where the controller can tell: each has a
// pid, a start time, a command line naming its VM directory, and the host's
// boot id, shown through proc_fs(), so identity checks run exactly as for
// QEMU; a booted VM is Starting until `boot_delay` has passed, then
// Ready{ip}; a power button powers it off after `shutdown_delay`. Like real
// VMMs they outlive vmlet: every change is appended to one file
// (`state_file`, JSON lines), replayed by Load(), which also keeps how many
// times each VM was booted (BootCount), across restarts.
//
// Thread-safe.
class FakeVmDriver final : public VmDriver {
 public:
  struct Options {
    std::string state_file;  // e.g. <state-dir>/fake-driver.jsonl
    std::string boot_id;     // the host boot id its VMMs carry
    std::chrono::milliseconds boot_delay{0};
    std::chrono::milliseconds shutdown_delay{0};
  };

  FakeVmDriver(const api::Clock& clock, Options options);
  ~FakeVmDriver() override;

  // Replays (and compacts) the state file; creates it when missing. Call once
  // before use.
  api::Status Load();

  void SetFaults(const api::VmKey& key, FakeFaults faults);
  // How many times the VM was booted, over the life of the state file.
  int BootCount(const api::VmKey& key) const;
  // VMMs that exist now (booted, not exited).
  size_t LiveVmms() const;
  // The VM's VMM dies now, as if killed from outside (a crash).
  void CrashNow(const api::VmKey& key);

  std::string_view name() const override { return "fake"; }
  std::vector<api::FieldError> CheckSpec(const api::VmSpec& spec) const override;
  api::StatusOr<BootResult> Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                 Deadline deadline) override;
  api::StatusOr<Observation> Observe(const ConfirmedVmm& vmm, Deadline deadline) override;
  api::Status Pause(const ConfirmedVmm& vmm, Deadline deadline) override;
  api::Status Resume(const ConfirmedVmm& vmm, Deadline deadline) override;
  api::Status Shutdown(const ConfirmedVmm& vmm, Deadline deadline) override;
  api::Status Kill(const ConfirmedVmm& vmm, Deadline deadline) override;
  VmmExit ExitState(const VmmHandle& handle) override;
  api::Status Cleanup(const VmmHandle& handle, Deadline deadline) override;
  api::StatusOr<std::optional<VmmHandle>> Rediscover(const std::string& vm_dir) override;
  const ProcFs& proc_fs() const override;

 private:
  struct Vm {
    api::VmKey key;
    pid_t pid = 0;
    uint64_t start_time_ticks = 0;
    int64_t booted_at_ns = 0;  // monotonic
    bool paused = false;
    int64_t paused_at_ns = 0;
    int64_t paused_total_ns = 0;             // time spent paused, not booting
    std::optional<int64_t> shutdown_at_ns;   // power button pressed
    std::optional<std::string> exit_reason;  // "poweroff", "crashed", "killed", "disklocked": gone
    std::string ip;
  };
  class Processes;

  int64_t NowNs() const;
  // Applies time-driven changes (crash, power-off) to `vm`; requires mu_.
  void Advance(const std::string& dir, Vm& vm);
  Vm* Find(const std::string& dir);             // requires mu_
  api::Status Append(const std::string& line);  // requires mu_
  // Load(): applies one line of the state file (skipping a torn or unknown
  // one), then rewrites the file with one line per live VM. Require mu_.
  void ReplayLocked(const std::string& line);
  api::Status CompactLocked();

  const api::Clock& clock_;
  const Options options_;
  std::unique_ptr<Processes> processes_;
  mutable std::mutex mu_;
  std::map<std::string, Vm> vms_;            // by VM dir; guarded by mu_
  std::map<api::VmKey, int> boots_;          // guarded by mu_
  std::map<api::VmKey, FakeFaults> faults_;  // guarded by mu_
  std::map<pid_t, std::string> by_pid_;      // guarded by mu_
  pid_t next_pid_ = 400000;                  // guarded by mu_
  int fd_ = -1;                              // the state file, O_APPEND; guarded by mu_
};

}  // namespace vmlet::drivers
