#include "drivers/host/vmm_supervisor.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <filesystem>

#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"
#include "drivers/host/vmm_files.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// How long to wait for a SIGKILLed VMM to go before reaping it anyway.
constexpr milliseconds kReapTimeout{5000};
// How often Launch() looks at /proc while the VMM's command line is not set.
constexpr milliseconds kCommandLineRecheck{2};

}  // namespace

VmmSupervisor::VmmSupervisor(api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                             Options options)
    : clock_(clock),
      waiter_(clock),
      proc_fs_(proc_fs),
      launcher_(launcher),
      options_(std::move(options)),
      watcher_(clock),
      sidecars_(clock, proc_fs, launcher, options_.sidecars) {}

VmmSupervisor::~VmmSupervisor() { Stop(); }

api::Status VmmSupervisor::Start() {
  return watcher_.Start([this](const std::string& vm_dir) {
    VmDriver::ChangeListener listener;
    {
      std::lock_guard lock(mu_);
      listener = listener_;
    }
    if (listener) listener(vm_dir);
  });
}

void VmmSupervisor::Stop() { watcher_.Stop(); }

void VmmSupervisor::SetChangeListener(VmDriver::ChangeListener listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::vector<api::FieldError> VmmSupervisor::CheckCommonSpec(const api::VmSpec& spec) const {
  std::vector<api::FieldError> errors;
  auto reject = [&](std::string field, std::string reason) {
    errors.push_back({std::move(field), std::move(reason)});
  };
  if (spec.rosetta) reject("spec.rosetta", "Rosetta exists only on macOS (apple-vz)");
  if (spec.efi_variable_store) {
    reject("spec.efiVariableStore", "the " + options_.driver +
                                        " driver boots the kernel directly and keeps no EFI "
                                        "variable store");
  }
  if (spec.machine_id) reject("spec.machineId", "only the apple-vz driver uses a machine id");
  const std::string& virtiofsd = options_.sidecars.virtiofsd_binary;
  if (!spec.shared_dirs.empty() && ::access(virtiofsd.c_str(), X_OK) != 0) {
    reject("spec.sharedDirs",
           "virtiofsd is not at " + virtiofsd + " (Debian: package qemu-system-common)");
  }
  return errors;
}

api::StatusOr<std::optional<BootRefusal>> VmmSupervisor::PrepareBoot(
    const api::VmSpec& spec, const std::string& vm_dir, const std::vector<std::string>& more_files,
    const std::string& socket_path, Deadline deadline) {
  // An image the VMM could not open would fail every boot alike: say which,
  // before launching anything.
  if (std::optional<BootRefusal> refused = CheckImagesReadable(spec, options_.vmm_user)) {
    return refused;
  }
  const VmmFiles files(vm_dir);
  if (api::Status s = files.PrepareForBoot(more_files, options_.vmm_user); !s.ok()) return s;
  if (api::Status s = watcher_.Watch(vm_dir, files.serial_log()); !s.ok()) {
    return s.WithContext("watching " + files.serial_log());
  }
  // A VMM cannot bind over a socket file a crash left behind.
  if (api::Status s = RemoveFile(socket_path); !s.ok()) {
    watcher_.Unwatch(vm_dir);
    return s.WithContext("stale control socket");
  }
  // The sidecars first: the VMM connects to their sockets as it starts.
  api::StatusOr<std::vector<Sidecar>> sidecars =
      sidecars_.Start(spec.shared_dirs, vm_dir, deadline);
  if (!sidecars.ok()) {
    watcher_.Unwatch(vm_dir);
    return sidecars.status();
  }
  return std::optional<BootRefusal>();
}

api::StatusOr<BootResult> VmmSupervisor::Launch(VmmProcess& vm, std::vector<std::string> argv,
                                                const std::string& vm_dir,
                                                const std::string& socket_path, Deadline deadline,
                                                UniqueFd* pidfd) {
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  api::StatusOr<pid_t> pid =
      boot_id.ok() ? launcher_.Spawn({std::move(argv), VmmFiles(vm_dir).vmm_log(), true})
                   : api::StatusOr<pid_t>(boot_id.status());
  if (!pid.ok()) {
    watcher_.Unwatch(vm_dir);
    (void)sidecars_.StopAll(vm_dir);
    return pid.status();
  }
  vm.pid = *pid;
  vm.child = true;
  vm.watched = true;
  // The pid is our unreaped child, so this pidfd cannot name another process.
  // It both paces the wait and tells of an early exit.
  api::StatusOr<UniqueFd> opened = proc_fs_.OpenPidFd(*pid);
  *pidfd = opened.ok() ? std::move(opened).value() : UniqueFd();
  // The handle must pass the identity check at once, so wait until /proc
  // shows the command line (for a moment after the spawn it is empty).
  while (true) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(*pid);
    if (info.ok() && info->state != 'Z' && CommandLineNamesVmDir(info->cmdline, vm_dir)) {
      vm.start_time_ticks = info->start_time_ticks;
      break;
    }
    const bool exited = (info.ok() && info->state == 'Z') || info.status().IsNotFound() ||
                        (pidfd->valid() && HasExited(pidfd->get()));
    if (exited) {
      (void)RemoveFile(socket_path);
      return ExitedAtOnce(vm, vm_dir);
    }
    if (clock_.MonotonicNow() >= deadline) {
      // No handle is returned, so nothing would ever look after this VMM:
      // it must not outlive the failed boot.
      KillUnrecorded(vm, vm_dir, pidfd->get());
      (void)RemoveFile(socket_path);
      return api::Status::DeadlineExceeded(options_.driver + " pid " + std::to_string(*pid) +
                                           " did not show its command line in time; killed");
    }
    Nap(pidfd->get(), kCommandLineRecheck);
  }
  return BootResult::Launched(
      VmmHandle{options_.driver, {*pid, vm.start_time_ticks}, *boot_id, vm_dir, socket_path});
}

api::StatusOr<BootResult> VmmSupervisor::ExitedAtOnce(VmmProcess& vm, const std::string& vm_dir) {
  Reap(vm);
  watcher_.Unwatch(vm_dir);
  (void)sidecars_.StopAll(vm_dir);
  const std::string log = VmmFiles(vm_dir).VmmLogTail();
  if (std::optional<std::string> locked = FindDiskLockFailure(log)) {
    return BootResult::Refused({BootRefusal::Reason::kDiskLocked, *locked});
  }
  const std::string why = LastLine(log);
  return api::Status::Unavailable(options_.binary + " exited at once" +
                                  (vm.exit ? " (" + vm.exit->Describe() + ")" : "") +
                                  (why.empty() ? "" : ": " + why));
}

void VmmSupervisor::KillUnrecorded(VmmProcess& vm, const std::string& vm_dir, int pidfd) {
  const Deadline give_up = clock_.MonotonicNow() + kReapTimeout;
  if (pidfd >= 0) {
    (void)SignalPidFd(pidfd, SIGKILL);
    (void)WaitExit(pidfd, give_up);
  } else if (!vm.exit) {
    // No pidfd to be had: the pid is our child, not reaped yet, so it cannot
    // have been given to another process.
    ::kill(vm.pid, SIGKILL);
  }
  for (Reap(vm); !vm.exit && clock_.MonotonicNow() < give_up; Reap(vm)) Nap(pidfd, milliseconds(5));
  watcher_.Unwatch(vm_dir);
  (void)sidecars_.StopAll(vm_dir);
}

void VmmSupervisor::AbandonBoot(VmmProcess& vm, const std::string& vm_dir, int pidfd,
                                const std::string& socket_path) {
  KillUnrecorded(vm, vm_dir, pidfd);
  (void)RemoveFile(socket_path);  // a killed VMM leaves it behind
}

void VmmSupervisor::Adopt(VmmProcess& vm, const std::string& vm_dir) {
  if (vm.watched) return;
  vm.watched = watcher_.Watch(vm_dir, VmmFiles(vm_dir).serial_log()).ok();
}

void VmmSupervisor::Reap(VmmProcess& vm) {
  if (!vm.child || vm.exit) return;
  vm.exit = launcher_.Reap(vm.pid);
}

std::optional<ReadyMarkerWatcher::Ready> VmmSupervisor::ReadyMarker(const std::string& vm_dir) {
  return watcher_.Poll(vm_dir);
}

api::Status VmmSupervisor::Kill(const ConfirmedVmm& vmm, Deadline deadline,
                                const std::function<std::optional<Deadline>()>& stop) {
  if (vmm.pidfd() < 0) return api::Status::FailedPrecondition("no pidfd for " + options_.driver);
  if (HasExited(vmm.pidfd())) return api::Status::Ok();
  if (std::optional<Deadline> stopped_by = stop();
      stopped_by && WaitExit(vmm.pidfd(), *stopped_by)) {
    return api::Status::Ok();
  }
  api::Status s = SignalPidFd(vmm.pidfd(), SIGKILL);
  if (!s.ok() && !s.IsNotFound()) return s.WithContext("SIGKILL " + options_.driver);
  if (!WaitExit(vmm.pidfd(), deadline)) {
    return api::Status::DeadlineExceeded(options_.driver + " pid " +
                                         std::to_string(vmm.handle().process.pid) +
                                         " did not exit after SIGKILL");
  }
  return api::Status::Ok();
}

api::Status VmmSupervisor::Cleanup(VmmProcess* vm, const VmmHandle& handle) {
  if (vm) Reap(*vm);
  watcher_.Unwatch(handle.vm_dir);
  if (api::Status s = sidecars_.StopAll(handle.vm_dir); !s.ok()) return s;
  // The VMM removes its socket when it exits in order, not when it is killed.
  return RemoveFile(handle.socket_path);
}

api::StatusOr<std::optional<VmmHandle>> VmmSupervisor::Rediscover(
    const std::string& vm_dir, const std::string& required_arg,
    const std::string& socket_path) const {
  api::StatusOr<std::vector<pid_t>> pids = proc_fs_.ListPids();
  if (!pids.ok()) return pids.status();
  const std::string binary = fs::path(options_.binary).filename();
  std::vector<ProcessInfo> found;
  for (pid_t pid : *pids) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(pid);
    if (!info.ok() || info->state == 'Z' || info->cmdline.empty()) continue;
    const std::vector<std::string>& argv = info->cmdline;
    // The VMM itself, or `ip netns exec` / setpriv just before it becomes it.
    const bool vmm = std::any_of(argv.begin(), argv.end(),
                                 [&](const auto& a) { return fs::path(a).filename() == binary; });
    if (!vmm || !CommandLineNamesVmDir(argv, vm_dir)) continue;
    if (std::find(argv.begin(), argv.end(), required_arg) == argv.end()) {
      continue;  // names the directory, but is not a VMM vmlet launched there
    }
    found.push_back(std::move(info).value());
  }
  if (found.empty()) return std::optional<VmmHandle>();
  if (found.size() > 1) {
    std::string pids_text;
    for (const ProcessInfo& p : found) pids_text += " " + std::to_string(p.pid);
    return api::Status::FailedPrecondition("more than one " + options_.driver + " runs for " +
                                           vm_dir + " (pids" + pids_text +
                                           "); refusing to pick one");
  }
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) return boot_id.status();
  return std::optional<VmmHandle>(VmmHandle{
      options_.driver, {found[0].pid, found[0].start_time_ticks}, *boot_id, vm_dir, socket_path});
}

bool VmmSupervisor::WaitExit(int pidfd, Deadline deadline) const {
  return waiter_.WaitReadable(pidfd, deadline);
}

bool VmmSupervisor::HasExited(int pidfd) { return FdWaiter::IsReadable(pidfd); }

void VmmSupervisor::Nap(int pidfd, milliseconds timeout) {
  if (pidfd >= 0) {
    (void)waiter_.WaitReadable(pidfd, clock_.MonotonicNow() + timeout);
    return;
  }
  std::mutex mu;
  std::condition_variable never;
  std::unique_lock lock(mu);
  clock_.WaitUntil(never, lock, clock_.MonotonicNow() + timeout, [] { return false; });
}

}  // namespace vmlet::drivers
