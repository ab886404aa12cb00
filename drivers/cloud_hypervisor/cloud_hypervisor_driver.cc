#include "drivers/cloud_hypervisor/cloud_hypervisor_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drivers/cloud_hypervisor/ch_event_parser.h"
#include "drivers/cloud_hypervisor/ch_vm_config.h"
#include "drivers/host/disk_lock.h"
#include "drivers/host/vmm_files.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr char kPowerDownLine[] = "reboot: Power down";
constexpr char kPanicLine[] = "Kernel panic";
// How soon to look again at a VMM that is changing by itself.
constexpr milliseconds kSoon{100};
constexpr milliseconds kLater{1000};
constexpr milliseconds kMuchLater{5000};

}  // namespace

std::string ChApiSocket(const std::string& vm_dir) { return vm_dir + "/ch.sock"; }
std::string ChEventsFile(const std::string& vm_dir) { return vm_dir + "/events.json"; }

std::vector<std::string> ChCommandLine(const api::VmSpec& spec, const std::string& vm_dir,
                                       const CloudHypervisorOptions& options) {
  std::vector<std::string> argv;
  if (spec.netns) argv.insert(argv.end(), {options.ip_binary, "netns", "exec", *spec.netns});
  // After the namespace is entered (which needs root), before CH runs.
  if (options.vmm_user) {
    const std::vector<std::string> run_as = RunAsPrefix(*options.vmm_user, options.setpriv_binary);
    argv.insert(argv.end(), run_as.begin(), run_as.end());
  }
  argv.insert(argv.end(),
              {options.cloud_hypervisor_binary, "--api-socket", "path=" + ChApiSocket(vm_dir),
               "--event-monitor", "path=" + ChEventsFile(vm_dir)});
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  return argv;
}

CloudHypervisorDriver::CloudHypervisorDriver(api::Clock& clock, const ProcFs& proc_fs,
                                             ProcessLauncher& launcher,
                                             CloudHypervisorOptions options)
    : clock_(clock),
      proc_fs_(proc_fs),
      options_(std::move(options)),
      supervisor_(clock, proc_fs, launcher,
                  VmmSupervisor::Options::Of("cloud-hypervisor", options_.cloud_hypervisor_binary,
                                             options_)) {}

CloudHypervisorDriver::~CloudHypervisorDriver() { Stop(); }

api::Status CloudHypervisorDriver::Start() { return supervisor_.Start(); }

void CloudHypervisorDriver::Stop() { supervisor_.Stop(); }

void CloudHypervisorDriver::SetChangeListener(ChangeListener listener) {
  supervisor_.SetChangeListener(std::move(listener));
}

std::vector<api::FieldError> CloudHypervisorDriver::CheckSpec(const api::VmSpec& spec) const {
  return supervisor_.CheckCommonSpec(spec);
}

std::unique_ptr<CloudHypervisorDriver::Vm> CloudHypervisorDriver::NewVm(
    const std::string& socket_path) {
  auto vm = std::make_unique<Vm>();
  vm->transport = std::make_unique<CurlChApiTransport>(clock_, socket_path);
  vm->api = std::make_unique<ChApiClient>(*vm->transport);
  return vm;
}

CloudHypervisorDriver::Vm& CloudHypervisorDriver::VmFor(const VmmHandle& handle) {
  Vm& vm = vms_.For(handle, [this](const VmmHandle& h) { return NewVm(h.socket_path); });
  supervisor_.Adopt(vm, handle.vm_dir);
  return vm;
}

api::StatusOr<BootResult> CloudHypervisorDriver::Boot(const api::VmSpec& spec,
                                                      const std::string& vm_dir,
                                                      Deadline deadline) {
  const std::string socket = ChApiSocket(vm_dir);
  // CH's option syntax ("path=...,key=value") has no escaping.
  if (vm_dir.find(',') != std::string::npos) {
    return api::Status::InvalidArgument("cloud-hypervisor cannot take a VM directory with a ',': " +
                                        vm_dir);
  }
  if (socket.size() >= sizeof(sockaddr_un::sun_path)) {
    return api::Status::InvalidArgument("the API socket path " + socket + " is longer than " +
                                        std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                        " bytes; use a shorter --state-dir");
  }
  api::StatusOr<std::optional<BootRefusal>> prepared =
      supervisor_.PrepareBoot(spec, vm_dir, {ChEventsFile(vm_dir)}, socket, deadline);
  if (!prepared.ok()) return prepared.status();
  if (prepared->has_value()) return BootResult::Refused(**std::move(prepared));
  std::unique_ptr<Vm> vm = NewVm(socket);
  UniqueFd pidfd;
  api::StatusOr<BootResult> launched = supervisor_.Launch(
      *vm, ChCommandLine(spec, vm_dir, options_), vm_dir, socket, deadline, &pidfd);
  if (!launched.ok() || !launched->handle()) return launched;

  api::VmSpec with_serial = spec;
  with_serial.serial_log = VmmFiles(vm_dir).serial_log();
  api::StatusOr<std::optional<BootRefusal>> up =
      BringUp(*vm, with_serial, vm_dir, pidfd.get(), deadline);
  if (!up.ok() || up->has_value()) {
    supervisor_.AbandonBoot(*vm, vm_dir, pidfd.get(), socket);
    if (!up.ok()) return up.status();
    return BootResult::Refused(**std::move(up));
  }
  vms_.Put(vm_dir, std::move(vm));
  return launched;
}

api::StatusOr<std::optional<BootRefusal>> CloudHypervisorDriver::BringUp(
    Vm& vm, const api::VmSpec& spec, const std::string& vm_dir, int pidfd, Deadline deadline) {
  const std::string who = "cloud-hypervisor pid " + std::to_string(vm.pid);
  auto exited = [&]() {
    supervisor_.Reap(vm);
    const std::string why = LastLine(VmmFiles(vm_dir).VmmLogTail());
    return api::Status::Unavailable(options_.cloud_hypervisor_binary + " exited at once" +
                                    (vm.exit ? " (" + vm.exit->Describe() + ")" : "") +
                                    (why.empty() ? "" : ": " + why));
  };

  // CH creates its API socket a moment after it starts.
  while (true) {
    api::StatusOr<std::string> version = vm.api->Ping(deadline);
    if (version.ok()) break;
    if (pidfd >= 0 && VmmSupervisor::HasExited(pidfd)) return exited();
    if (!version.status().IsRetryable() || clock_.MonotonicNow() >= deadline) {
      return version.status().WithContext(who + " API not up");
    }
    supervisor_.Nap(pidfd, options_.ping_interval);
  }

  if (options_.vmm_user) {
    // CH made its socket with the umask it inherited (077: 0700); a socket
    // needs no execute bit, so it is made 0600, as vmlet's own files are.
    ::chmod(ChApiSocket(vm_dir).c_str(), 0600);
  }
  if (api::Status s =
          vm.api->Create(ChVmConfig(spec, vm_dir, options_.vmm_user.has_value()), deadline);
      !s.ok()) {
    return s.WithContext(who);
  }
  if (api::Status s = vm.api->Boot(deadline); !s.ok()) {
    // CH opens and locks the disks when it boots the VM: a lock held by
    // another process fails vm.boot, and the error body says so.
    if (std::optional<std::string> locked = FindDiskLockFailure(s.message())) {
      return std::optional<BootRefusal>(
          BootRefusal{BootRefusal::Reason::kDiskLocked, *locked + " [" + who + "]"});
    }
    return s.WithContext(who);
  }
  return std::optional<BootRefusal>();
}

api::StatusOr<Observation> CloudHypervisorDriver::Observe(const ConfirmedVmm& vmm,
                                                          Deadline deadline) {
  const VmmHandle& handle = vmm.handle();
  Vm& vm = VmFor(handle);
  std::optional<ReadyMarkerWatcher::Ready> ready = supervisor_.ReadyMarker(handle.vm_dir);
  api::StatusOr<ChVmInfo> info = vm.api->Info(deadline);
  if (!info.ok()) {
    // The API socket is not up yet, or the VMM has just been started without
    // a VM (vmlet died between the spawn and vm.create): Starting, until the
    // readiness timeout says otherwise.
    if (!ready && (info.status().IsRetryable() ||
                   info.status().code() == api::Status::Code::kFailedPrecondition)) {
      return Observation{api::VmState::Starting(), std::nullopt, kSoon};
    }
    return info.status();
  }
  const std::string& state = info->state;
  if (state == "Running") {
    if (ready) return Observation{api::VmState::Ready(ready->ip), ready->seen_at, std::nullopt};
    return Observation{api::VmState::Starting(), std::nullopt, std::nullopt};
  }
  if (state == "Paused") return Observation{api::VmState::Paused(), std::nullopt, std::nullopt};
  if (state == "Created") {
    // Created but not booted; Boot() boots at once, so this is short-lived.
    return Observation{api::VmState::Starting(), std::nullopt, kLater};
  }
  if (state == "Shutdown") {
    // The VM is going away and the VMM with it (without --no-shutdown).
    return Observation{api::VmState::Starting(), std::nullopt, kSoon};
  }
  if (state == "BreakPoint") {
    return Observation{
        api::VmState::Failed("cloud-hypervisor holds the VM at a debugger breakpoint"),
        std::nullopt, kMuchLater};
  }
  return api::Status::Internal("vm.info: unknown VM state \"" + state + "\"");
}

api::Status CloudHypervisorDriver::Pause(const ConfirmedVmm& vmm, Deadline deadline) {
  Vm& vm = VmFor(vmm.handle());
  api::Status s = vm.api->Pause(deadline);
  if (s.ok() || s.code() != api::Status::Code::kFailedPrecondition) return s;
  // CH refuses to pause a paused VM (500); that is success here.
  api::StatusOr<ChVmInfo> info = vm.api->Info(deadline);
  if (info.ok() && info->state == "Paused") return api::Status::Ok();
  return s;
}

api::Status CloudHypervisorDriver::Resume(const ConfirmedVmm& vmm, Deadline deadline) {
  Vm& vm = VmFor(vmm.handle());
  api::Status s = vm.api->Resume(deadline);
  if (s.ok() || s.code() != api::Status::Code::kFailedPrecondition) return s;
  // CH refuses to resume a running VM (500); that is success here.
  api::StatusOr<ChVmInfo> info = vm.api->Info(deadline);
  if (info.ok() && info->state == "Running") return api::Status::Ok();
  return s;
}

api::Status CloudHypervisorDriver::Shutdown(const ConfirmedVmm& vmm, Deadline deadline) {
  return VmFor(vmm.handle()).api->PowerButton(deadline);
}

api::Status CloudHypervisorDriver::Kill(const ConfirmedVmm& vmm, Deadline deadline) {
  return supervisor_.Kill(vmm, deadline, [&]() -> std::optional<Deadline> {
    Vm& vm = VmFor(vmm.handle());
    vm.kill_requested = true;
    // CH's own forced stop first: it tears the VM down, writes its last
    // events, removes its socket and exits 0. Its answers do not matter, only
    // whether the process goes. At most half the time left, so that SIGKILL
    // has the other half.
    const Deadline now = clock_.MonotonicNow();
    const Deadline api_by =
        std::min(now + (deadline - now) / 2, now + options_.api_shutdown_timeout);
    (void)vm.api->ShutdownVm(api_by);
    (void)vm.api->ShutdownVmm(api_by);
    return api_by;
  });
}

VmmExit CloudHypervisorDriver::ExitState(const VmmHandle& handle) {
  Vm& vm = VmFor(handle);
  supervisor_.Reap(vm);
  if (vm.kill_requested) return api::VmState::Stopped();
  const VmmFiles files(handle.vm_dir);
  if (vm.exit && vm.exit->signaled) {
    return api::VmState::Failed("cloud-hypervisor was " + vm.exit->Describe());
  }
  if (vm.exit && vm.exit->code != 0) {
    const std::string log = files.VmmLogTail();
    if (std::optional<std::string> locked = FindDiskLockFailure(log)) {
      return BootRefusal{BootRefusal::Reason::kDiskLocked, *locked};
    }
    const std::string why = LastLine(log);
    return api::VmState::Failed("cloud-hypervisor " + vm.exit->Describe() +
                                (why.empty() ? "" : ": " + why));
  }
  // It exited 0, or how is unknown (adopted after a vmlet restart: only its
  // parent saw its status): what it and the guest wrote last tell.
  const std::string serial = files.SerialTail();
  const size_t panic_at = serial.rfind(kPanicLine);
  const size_t power_down_at = serial.rfind(kPowerDownLine);
  // A guest that panicked is reset by CH and may power off cleanly later:
  // the last of the two lines counts.
  if (panic_at != std::string::npos &&
      (power_down_at == std::string::npos || panic_at > power_down_at)) {
    return api::VmState::Failed("the guest kernel panicked: " + LineWith(serial, kPanicLine));
  }
  api::StatusOr<ChEventSummary> events = ReadChEventSummary(ChEventsFile(handle.vm_dir));
  if (events.ok() && events->guest_panic) {
    return api::VmState::Failed("the guest panicked (" + *events->guest_panic + ")");
  }
  // vmlet did not ask (Kill() was not called): the guest powered off, or
  // the VMM was shut down in order from outside (SIGTERM, the API).
  if (events.ok() && (events->vm_shutdown || events->vmm_shutdown)) return api::VmState::Stopped();
  if (power_down_at != std::string::npos) return api::VmState::Stopped();
  if (vm.exit) {
    return api::VmState::Failed(
        "cloud-hypervisor exited with status 0 without a shutdown event or a guest power-off");
  }
  return api::VmState::Failed(
      "cloud-hypervisor ended without a shutdown event (vmlet did not launch this one, so its "
      "exit status is unknown; killed from outside?)");
}

api::Status CloudHypervisorDriver::Cleanup(const VmmHandle& handle, Deadline deadline) {
  (void)deadline;
  std::unique_ptr<Vm> vm = vms_.Take(handle);
  return supervisor_.Cleanup(vm.get(), handle);
}

api::StatusOr<std::optional<VmmHandle>> CloudHypervisorDriver::Rediscover(
    const std::string& vm_dir) {
  return supervisor_.Rediscover(vm_dir, "path=" + ChApiSocket(vm_dir), ChApiSocket(vm_dir));
}

}  // namespace vmlet::drivers
