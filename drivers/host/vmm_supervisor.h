#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/validation.h"
#include "api/vm_spec.h"
#include "drivers/boot_refusal.h"
#include "drivers/confirmed_vmm.h"
#include "drivers/host/fd_waiter.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/ready_marker_watcher.h"
#include "drivers/host/virtiofsd_sidecars.h"
#include "drivers/host/vmm_table.h"
#include "drivers/host/vmm_user.h"
#include "drivers/proc_fs.h"
#include "drivers/unique_fd.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// What every driver whose VMM is a host process (QEMU, Cloud Hypervisor)
// does alike, so that each driver keeps only its command line or API calls,
// its Observe() mapping and its ExitState() rules:
//  - the ready-marker watcher on each VM's serial.log, and the change
//    listener it reports to;
//  - the virtiofsd sidecars of spec.sharedDirs;
//  - the boot: fresh log files (VmmFiles), the spawn in its own session with
//    its output in vmm.log, and the wait until /proc shows its command line
//    (so the handle passes the identity check at once); a VMM that exits at
//    once or never shows its command line is not left behind;
//  - Kill(): the hypervisor's own stop first, then SIGKILL through the pidfd;
//  - Cleanup() and Rediscover().
//
// Start() before use, Stop() before destruction. Thread-safe; calls for one
// VM must not run concurrently (the work queue's guarantee).
class VmmSupervisor {
 public:
  struct Options {
    // The driver's name as manifests and VmmHandle::driver spell it.
    std::string driver;
    // The VMM program: names it in messages, and Rediscover() recognises its
    // processes by its file name.
    std::string binary;
    // vmlet run --vmm-user: the VMM's user (who must be able to open the
    // VM's images, and gets serial.log); nothing: vmlet's own.
    std::optional<VmmCredentials> vmm_user;
    // The sidecars of spec.sharedDirs.
    VirtiofsdSidecars::Options sidecars;

    // From a driver's own options, which name virtiofsd_binary, vmm_user
    // and setpriv_binary alike (QemuOptions, CloudHypervisorOptions).
    template <typename DriverOptions>
    static Options Of(const std::string& driver, const std::string& binary,
                      const DriverOptions& options) {
      return {.driver = driver,
              .binary = binary,
              .vmm_user = options.vmm_user,
              .sidecars = {.virtiofsd_binary = options.virtiofsd_binary,
                           .run_as = options.vmm_user,
                           .setpriv_binary = options.setpriv_binary}};
    }
  };

  // `clock`, `proc_fs` and `launcher` must outlive the supervisor. Starts
  // nothing.
  VmmSupervisor(api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                Options options);
  ~VmmSupervisor();

  // Starts the marker watcher's thread. Errors as ReadyMarkerWatcher::Start.
  api::Status Start();
  // Stops it. Idempotent.
  void Stop();
  void SetChangeListener(VmDriver::ChangeListener listener);

  // The field errors of what no Linux VMM driver honours: spec.rosetta,
  // spec.efiVariableStore (the kernel is booted directly), spec.machineId,
  // and spec.sharedDirs when virtiofsd is missing.
  std::vector<api::FieldError> CheckCommonSpec(const api::VmSpec& spec) const;

  // The boot's first steps, before anything is launched: a refusal when the
  // VMM user cannot open one of the images (ImageNotReadable); else rotates
  // the logs and `more_files` (VmmFiles::PrepareForBoot), puts the new
  // serial.log under the watcher, removes a stale `socket_path`, and starts
  // the sidecars. OK: nothing refused and everything ready. On error,
  // nothing is left watched or running.
  [[nodiscard]] api::StatusOr<std::optional<BootRefusal>> PrepareBoot(
      const api::VmSpec& spec, const std::string& vm_dir,
      const std::vector<std::string>& more_files, const std::string& socket_path,
      Deadline deadline);

  // Spawns `argv` in its own session with its output in vmm.log, records it
  // in `vm` (pid, child, watched), and waits until /proc shows its command
  // line naming vm_dir (start_time_ticks set). Returns the handle (with the
  // host's boot id and `socket_path`); `*pidfd` is the child's pidfd
  // (invalid when none could be had). A VMM that exits before is reaped: a
  // refusal when vmm.log says a disk image is locked, else Unavailable
  // "<binary> exited at once (how): <last line of vmm.log>". One that does
  // not show its command line by `deadline` is killed: DeadlineExceeded.
  // On any failure the sidecars are ended and serial.log unwatched.
  // REQUIRES: PrepareBoot() succeeded for vm_dir.
  [[nodiscard]] api::StatusOr<BootResult> Launch(VmmProcess& vm, std::vector<std::string> argv,
                                                 const std::string& vm_dir,
                                                 const std::string& socket_path, Deadline deadline,
                                                 UniqueFd* pidfd);

  // A launched VMM whose boot failed after Launch(): SIGKILL (through
  // `pidfd` when valid), a bounded wait, the reap; then the sidecars are
  // ended, serial.log unwatched and `socket_path` removed.
  void AbandonBoot(VmmProcess& vm, const std::string& vm_dir, int pidfd,
                   const std::string& socket_path);

  // The entry's serial.log under the watcher, read from its start, for a VMM
  // adopted after a restart (a marker printed while vmlet was down counts).
  void Adopt(VmmProcess& vm, const std::string& vm_dir);

  // Collects the exit status of a child that has exited, once.
  void Reap(VmmProcess& vm);

  // The ready marker seen on the VM's serial.log, if any.
  std::optional<ReadyMarkerWatcher::Ready> ReadyMarker(const std::string& vm_dir);

  // Kill(): OK at once when the VMM has exited. Otherwise `stop()` asks the
  // hypervisor to stop (its own forced stop, which flushes and removes its
  // socket) and returns until when to wait for the exit (nothing: do not
  // wait); if the VMM is not gone by then, SIGKILL through the pidfd and a
  // wait until `deadline`. FailedPrecondition without a pidfd;
  // DeadlineExceeded when even SIGKILL did not end it by `deadline`.
  [[nodiscard]] api::Status Kill(const ConfirmedVmm& vmm, Deadline deadline,
                                 const std::function<std::optional<Deadline>()>& stop);

  // Cleanup(): reaps `vm` (the VM's entry, taken from the table; may be
  // null), unwatches serial.log, ends the sidecars, and removes the control
  // socket the VMM leaves behind when it is killed. Idempotent.
  [[nodiscard]] api::Status Cleanup(VmmProcess* vm, const VmmHandle& handle);

  // Rediscover(): the one live VMM of this binary whose command line names
  // vm_dir and holds `required_arg` exactly (the control socket argument
  // the driver gives it), as a handle with `socket_path`. Nothing when there
  // is none; FailedPrecondition when there are several.
  [[nodiscard]] api::StatusOr<std::optional<VmmHandle>> Rediscover(
      const std::string& vm_dir, const std::string& required_arg,
      const std::string& socket_path) const;

  // Waits until the pidfd's process has exited or `deadline`; true if exited.
  bool WaitExit(int pidfd, Deadline deadline) const;
  // Whether the pidfd's process has exited, without waiting.
  static bool HasExited(int pidfd);
  // Waits `timeout`, or less when the pidfd (if >= 0) reports an exit.
  void Nap(int pidfd, std::chrono::milliseconds timeout);

  const Options& options() const { return options_; }

 private:
  // Launch()'s failure path for a VMM that is not recorded anywhere: SIGKILL,
  // a bounded wait and the reap, then the sidecars and the watch.
  void KillUnrecorded(VmmProcess& vm, const std::string& vm_dir, int pidfd);
  // Why a VMM exited during Launch(): a refusal or an error.
  api::StatusOr<BootResult> ExitedAtOnce(VmmProcess& vm, const std::string& vm_dir);

  api::Clock& clock_;  // non-const: Nap() waits on it
  const FdWaiter waiter_;
  const ProcFs& proc_fs_;
  ProcessLauncher& launcher_;
  const Options options_;
  ReadyMarkerWatcher watcher_;
  VirtiofsdSidecars sidecars_;

  std::mutex mu_;
  VmDriver::ChangeListener listener_;  // guarded by mu_
};

}  // namespace vmlet::drivers
