#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/clock.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/vmm_supervisor.h"
#include "drivers/host/vmm_table.h"
#include "drivers/host/vmm_user.h"
#include "drivers/host/vsock_cid.h"
#include "drivers/proc_fs.h"
#include "drivers/qemu/qmp_client.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// How QemuDriver launches QEMU. Every default is what a Debian 12 host with
// the qemu-system-x86 package has.
struct QemuOptions {
  // Found on PATH unless it holds a '/'.
  std::string qemu_binary = "qemu-system-x86_64";
  // "kvm" or "tcg"; empty: probed by Start(): kvm when /dev/kvm can be
  // opened read-write and a QEMU with `-accel kvm -cpu host -S` comes up and
  // answers QMP (a nested or paravirtual KVM may have /dev/kvm and still make
  // QEMU abort while it sets up the vCPU), else tcg.
  std::string accel;
  // Where the KVM probe puts its QMP socket and log (vmlet's state dir).
  std::string probe_dir = "/tmp";
  // For spec.netns: the VMM runs as `<ip_binary> netns exec NAME qemu...`.
  std::string ip_binary = "ip";
  // For spec.sharedDirs: one virtiofsd per dir (VirtiofsdSidecars).
  std::string virtiofsd_binary = "/usr/lib/qemu/virtiofsd";
  // Kill(): how long `quit` may take before SIGKILL.
  std::chrono::milliseconds quit_timeout{2000};
  // vmlet run --vmm-user: QEMU runs as this user from its first
  // instruction (spawned through setpriv, every capability dropped), and
  // must be able to open the VM's images as it (else ImageNotReadable).
  // Nothing: QEMU runs as vmlet does.
  std::optional<VmmCredentials> vmm_user;
  std::string setpriv_binary = "setpriv";
};

// The QEMU argv for `spec` (docs/drivers.md), after `ip netns exec NETNS` for
// spec.netns and RunAsPrefix() for options.vmm_user, with every file QEMU uses under
// `vm_dir`: qmp.sock (QMP server), serial.log (the guest's ttyS0), and the
// disks and kernel at the spec's paths. `accel` is "kvm" or "tcg". Pure: for
// tests and for `vmlet validate`-style checks.
//   qemu-system-x86_64 -name ns/name -accel A [-cpu host] -m MB -smp N
//     -nodefaults -no-user-config -display none -no-reboot
//     -sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny
//     -qmp unix:<vm_dir>/qmp.sock,server=on,wait=off -serial file:<serial.log>
//     -kernel K [-initrd I] -append CMDLINE
//     [-drive file=ROOT,format=raw|qcow2,if=virtio,id=root] [... id=data]
//     [-drive file=SEED,format=raw,if=virtio,readonly=on,id=seed]
//     [-netdev tap,id=netN,ifname=TAP,script=no,downscript=no
//      -device virtio-net-pci,netdev=netN,mac=MAC]...
//     [-device vhost-vsock-pci,guest-cid=CID]
//     [-object memory-backend-memfd,id=mem,size=MBM,share=on -numa node,memdev=mem
//      -chardev socket,id=fsN,path=<vm_dir>/virtiofs-TAG.sock
//      -device vhost-user-fs-pci,chardev=fsN,tag=TAG]...   (sharedDirs: guest RAM shared
//                                                           with the virtiofsd sidecars)
// Commas in paths are doubled (QEMU's option escaping). Without a cmdline in
// the spec: "console=ttyS0 panic=-1" (the serial console carries the ready
// marker; a panicking guest resets, which -no-reboot turns into an exit that
// the restart policy handles). A disk's format is qcow2 when the file starts
// with qcow2's magic, raw otherwise (an unreadable disk is left to QEMU,
// which reports it).
std::vector<std::string> QemuCommandLine(const api::VmSpec& spec, const std::string& vm_dir,
                                         const std::string& accel, const QemuOptions& options);

// The `qemu` driver (docs/drivers.md): QEMU over QMP, KVM where /dev/kvm is usable,
// TCG otherwise.
//
// Boot starts a virtiofsd sidecar per shared dir (VirtiofsdSidecars), then
// spawns QEMU in its own session (it outlives vmlet) with its output in
// <vm_dir>/vmm.log, after rotating serial.log and vmm.log to *.1 and removing
// a stale qmp.sock; it returns once /proc shows QEMU's command line (which
// names vm_dir), so the handle it returns passes the identity check at once.
// Observe = the ready marker on serial.log (ReadyMarkerWatcher) + QMP
// `query-status`: Starting until the marker, then Ready{ip}; Paused when
// QEMU is paused. Pause = `stop`, Resume = `cont`, Shutdown =
// `system_powerdown`, Kill = `quit`, then SIGKILL through the pidfd after
// quit_timeout. Cleanup ends the sidecars too. ExitState reads how QEMU ended: its exit status when
// this vmlet launched it (waitpid), and what the guest last printed: "reboot: Power down" is a
// clean power-off (Stopped), anything else a failure.
//
// Start() before use (it starts the marker watcher's thread); Stop() before
// destruction. Thread-safe; calls for one VM must not run concurrently (the
// work queue's guarantee).
class QemuDriver final : public VmDriver {
 public:
  QemuDriver(api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
             QemuOptions options);
  ~QemuDriver() override;

  // Probes the accelerator (see QemuOptions::accel) and starts the marker
  // watcher's thread.
  api::Status Start();
  void Stop();

  // The accelerator Boot() uses: options.accel, or the probed one; and why.
  const std::string& accel() const { return accel_; }
  const std::string& accel_reason() const { return accel_reason_; }

  std::string_view name() const override { return "qemu"; }
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
  // What the driver keeps about one VM's VMM while it lives.
  struct Vm : VmmProcess {
    std::string shutdown_reason;  // from a QMP SHUTDOWN event, if one was read
  };

  // The entry for `handle`'s process, made (and its serial log watched) on
  // first use; replaced when the handle names another process.
  Vm& VmFor(const VmmHandle& handle);
  // Runs one QMP command on the VM, on a connection of its own.
  api::StatusOr<nlohmann::json> Qmp(Vm& vm, const VmmHandle& handle, const std::string& command,
                                    Deadline deadline);
  // "kvm" when QEMU can really run with it here, else "tcg"; sets accel_reason_.
  std::string ProbeAccel();

  const api::Clock& clock_;
  const ProcFs& proc_fs_;
  ProcessLauncher& launcher_;
  const QemuOptions options_;
  std::string accel_;
  std::string accel_reason_;
  VmmSupervisor supervisor_;
  VmmTable<Vm> vms_;
};

}  // namespace vmlet::drivers
