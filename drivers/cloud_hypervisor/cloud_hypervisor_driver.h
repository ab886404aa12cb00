#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/clock.h"
#include "drivers/cloud_hypervisor/ch_api_client.h"
#include "drivers/cloud_hypervisor/ch_api_transport.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/vmm_supervisor.h"
#include "drivers/host/vmm_table.h"
#include "drivers/host/vmm_user.h"
#include "drivers/proc_fs.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// How CloudHypervisorDriver launches Cloud Hypervisor.
struct CloudHypervisorOptions {
  // The VMM program; found on PATH unless it holds a '/'. Rediscover()
  // recognises its VMMs by this program's file name.
  std::string cloud_hypervisor_binary = "cloud-hypervisor";
  // Added after the driver's own arguments (e.g. "-v", or "--seccomp" "log").
  // Default: none.
  std::vector<std::string> extra_args;
  // For spec.netns: the VMM runs as `<ip_binary> netns exec NAME ...`.
  std::string ip_binary = "ip";
  // For spec.sharedDirs: one virtiofsd per dir (VirtiofsdSidecars).
  std::string virtiofsd_binary = "/usr/lib/qemu/virtiofsd";
  // Kill(): how long vm.shutdown + vmm.shutdown (and the exit they cause)
  // may take in all before SIGKILL; at most half the time left before the
  // call's deadline, so that SIGKILL always gets the other half.
  std::chrono::milliseconds api_shutdown_timeout{2000};
  // Boot(): how long to wait between vmm.ping attempts while CH creates its
  // API socket (an exit of the VMM ends the wait at once).
  std::chrono::milliseconds ping_interval{10};
  // vmlet run --vmm-user: CH runs as this user from its first instruction
  // (spawned through setpriv, every capability dropped; CH's own seccomp
  // filter stays on), and must be able to open the VM's images as it (else
  // ImageNotReadable). Nothing: CH runs as vmlet does.
  std::optional<VmmCredentials> vmm_user;
  std::string setpriv_binary = "setpriv";
};

// The files of a VM's VMM, under its vm_dir.
std::string ChApiSocket(const std::string& vm_dir);   // <vm_dir>/ch.sock
std::string ChEventsFile(const std::string& vm_dir);  // <vm_dir>/events.json

// The argv Boot() spawns for `spec` (docs/drivers.md):
//   [ip netns exec NETNS] [setpriv ... --]  (options.vmm_user: RunAsPrefix())
//     cloud-hypervisor --api-socket path=<vm_dir>/ch.sock
//     --event-monitor path=<vm_dir>/events.json [extra_args...]
// The VM itself is described by ChVmConfig() and sent with vm.create. Pure.
std::vector<std::string> ChCommandLine(const api::VmSpec& spec, const std::string& vm_dir,
                                       const CloudHypervisorOptions& options);

// The `cloud-hypervisor` driver (docs/drivers.md): Cloud Hypervisor driven over
// its REST API on a Unix socket (libcurl).
//
// Boot rotates serial.log, vmm.log and events.json to *.1, puts a fresh
// serial.log under the ready-marker watcher, removes a stale ch.sock, and
// spawns ChCommandLine() in its own session (it outlives vmlet) with its
// output in vmm.log; waits until /proc shows its command line (which names
// vm_dir), then until vmm.ping answers, then sends vm.create (ChVmConfig())
// and vm.boot, and returns the handle. When any of that fails, the VMM it
// spawned is killed (SIGKILL through a pidfd) and reaped, and the error
// (CH's message, or the last line of vmm.log) is returned.
//
// Observe = the ready marker on serial.log + vm.info's state: Created ->
// Starting (not booted yet); Running -> Starting until the marker, then
// Ready{ip}; Paused -> Paused; Shutdown -> Starting (the VMM is exiting;
// look again soon); BreakPoint -> Failed (stopped in the debugger; shown,
// not acted on). An API that does not answer yet before the marker reads as
// Starting. Pause = vm.pause, Resume = vm.resume (both idempotent: a refusal
// is re-checked against vm.info). Shutdown = vm.power-button. Kill =
// vm.shutdown + vmm.shutdown within api_shutdown_timeout, then SIGKILL
// through the pidfd.
//
// ExitState tells how the VMM ended from: Kill() having been asked (Stopped);
// its wait status when this vmlet launched it (a signal or a non-zero status
// is Failed); the event monitor (a "vm shutdown" vmlet did not ask for is
// the guest powering off: Stopped, unless the guest panicked); and the end of
// serial.log ("Kernel panic" is Failed, "reboot: Power down" is Stopped).
//
// sharedDirs: one virtiofsd sidecar per dir (VirtiofsdSidecars), started
// before the VMM, ended by Cleanup() and by a failed Boot().
//
// Start() before use (it starts the marker watcher's thread); Stop() before
// destruction. Thread-safe; calls for one VM must not run concurrently (the
// work queue's guarantee).
class CloudHypervisorDriver final : public VmDriver {
 public:
  // `clock`, `proc_fs` and `launcher` must outlive the driver. Starts
  // nothing.
  CloudHypervisorDriver(api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                        CloudHypervisorOptions options);
  ~CloudHypervisorDriver() override;

  // Starts the marker watcher's thread. Errors as ReadyMarkerWatcher::Start.
  api::Status Start();
  // Stops it. Idempotent.
  void Stop();

  const CloudHypervisorOptions& options() const { return options_; }

  std::string_view name() const override { return "cloud-hypervisor"; }
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
  const ProcFs& proc_fs() const override { return proc_fs_; }
  void SetChangeListener(ChangeListener listener) override;

 private:
  // What the driver keeps about one VM's VMM while it lives. Used only by the
  // worker that holds the VM's key.
  struct Vm : VmmProcess {
    bool kill_requested = false;                // Kill() ran: the VMM ends because vmlet asked
    std::unique_ptr<ChApiTransport> transport;  // one keep-alive connection
    std::unique_ptr<ChApiClient> api;
  };

  // The entry for `handle`'s process, made (with its transport, and its
  // serial log watched) on first use; replaced when the handle names another
  // process.
  Vm& VmFor(const VmmHandle& handle);
  // A fresh entry for a VMM on `socket_path`.
  std::unique_ptr<Vm> NewVm(const std::string& socket_path);
  // Boot() after the launch: waits for the API, creates and boots the VM.
  // Nothing when the VM booted; a refusal when CH could not lock a disk. On
  // error or refusal the caller kills the VMM.
  api::StatusOr<std::optional<BootRefusal>> BringUp(Vm& vm, const api::VmSpec& spec,
                                                    const std::string& vm_dir, int pidfd,
                                                    Deadline deadline);

  const api::Clock& clock_;
  const ProcFs& proc_fs_;
  const CloudHypervisorOptions options_;
  VmmSupervisor supervisor_;
  VmmTable<Vm> vms_;
};

}  // namespace vmlet::drivers
