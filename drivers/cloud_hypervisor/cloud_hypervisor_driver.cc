#include "drivers/cloud_hypervisor/cloud_hypervisor_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drivers/cloud_hypervisor/ch_event_parser.h"
#include "drivers/cloud_hypervisor/ch_vm_config.h"
#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr char kPowerDownLine[] = "reboot: Power down";
constexpr char kPanicLine[] = "Kernel panic";
// How much of the end of serial.log and vmm.log ExitState reads.
constexpr std::streamoff kTailBytes = 64 * 1024;
// How soon to look again at a VMM that is changing by itself.
constexpr milliseconds kSoon{100};
constexpr milliseconds kLater{1000};
constexpr milliseconds kMuchLater{5000};
// Boot()'s failure path: how long to wait for a SIGKILLed VMM to go.
constexpr milliseconds kReapTimeout{2000};

std::string VmmLog(const std::string& vm_dir) { return vm_dir + "/vmm.log"; }
std::string SerialLog(const std::string& vm_dir) { return vm_dir + "/serial.log"; }

// The last `kTailBytes` of a file, or "" when it cannot be read.
std::string Tail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size <= 0) return "";
  const std::streamoff from = std::max<std::streamoff>(0, size - kTailBytes);
  in.seekg(from);
  std::string data(static_cast<size_t>(size - from), '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

// The last non-empty line of `text`, without '\r'.
std::string LastLine(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  const size_t nl = text.rfind('\n');
  std::string line(nl == std::string_view::npos ? text : text.substr(nl + 1));
  std::erase(line, '\r');
  return line;
}

// The last line of `text` holding `needle`, without '\r'; "" when none.
std::string LineWith(std::string_view text, std::string_view needle) {
  const size_t at = text.rfind(needle);
  if (at == std::string_view::npos) return "";
  const size_t begin = text.rfind('\n', at);
  const size_t end = text.find('\n', at);
  std::string line(
      text.substr(begin == std::string_view::npos ? 0 : begin + 1,
                  end == std::string_view::npos ? std::string_view::npos : end - (begin + 1)));
  std::erase(line, '\r');
  return line;
}

// Moves `path` to `path`.1 (replacing an older one), so each boot starts a
// fresh file and the previous boot's stays for a post-mortem.
api::Status Rotate(const std::string& path) {
  if (::rename(path.c_str(), (path + ".1").c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot rotate " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

api::Status CreateEmpty(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid()) {
    return api::Status::Internal("cannot create " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

api::Status RemoveFile(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot remove " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

bool Exited(int pidfd) {
  pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, 0) > 0;
}

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
      launcher_(launcher),
      options_(std::move(options)),
      watcher_(clock),
      sidecars_(clock, proc_fs, launcher,
                VirtiofsdSidecars::Options{
                    .virtiofsd_binary = options_.virtiofsd_binary,
                    .run_as = options_.vmm_user,
                    .setpriv_binary = options_.setpriv_binary}) {}

CloudHypervisorDriver::~CloudHypervisorDriver() { Stop(); }

api::Status CloudHypervisorDriver::Start() {
  return watcher_.Start([this](const std::string& vm_dir) {
    ChangeListener listener;
    {
      std::lock_guard lock(mu_);
      listener = listener_;
    }
    if (listener) listener(vm_dir);
  });
}

void CloudHypervisorDriver::Stop() { watcher_.Stop(); }

void CloudHypervisorDriver::SetChangeListener(ChangeListener listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::vector<api::FieldError> CloudHypervisorDriver::CheckSpec(const api::VmSpec& spec) const {
  std::vector<api::FieldError> errors;
  auto reject = [&](std::string field, std::string reason) {
    errors.push_back({std::move(field), std::move(reason)});
  };
  if (spec.rosetta) reject("spec.rosetta", "Rosetta exists only on macOS (apple-vz)");
  if (spec.efi_variable_store) {
    reject("spec.efiVariableStore",
           "the cloud-hypervisor driver boots the kernel directly and keeps no EFI variable "
           "store");
  }
  if (spec.machine_id) reject("spec.machineId", "only the apple-vz driver uses a machine id");
  if (!spec.shared_dirs.empty() && ::access(options_.virtiofsd_binary.c_str(), X_OK) != 0) {
    reject("spec.sharedDirs", "virtiofsd is not at " + options_.virtiofsd_binary +
                                  " (Debian: package qemu-system-common)");
  }
  return errors;
}

std::unique_ptr<CloudHypervisorDriver::Vm> CloudHypervisorDriver::NewVm(
    pid_t pid, uint64_t start_time_ticks, const std::string& socket_path) {
  auto vm = std::make_unique<Vm>();
  vm->pid = pid;
  vm->start_time_ticks = start_time_ticks;
  vm->transport = std::make_unique<CurlChApiTransport>(clock_, socket_path);
  vm->api = std::make_unique<ChApiClient>(*vm->transport);
  return vm;
}

CloudHypervisorDriver::Vm& CloudHypervisorDriver::VmFor(const VmmHandle& handle) {
  Vm* vm = nullptr;
  {
    std::lock_guard lock(mu_);
    std::unique_ptr<Vm>& slot = vms_[handle.vm_dir];
    if (!slot || slot->pid != handle.process.pid ||
        slot->start_time_ticks != handle.process.start_time_ticks) {
      slot = NewVm(handle.process.pid, handle.process.start_time_ticks, handle.socket_path);
    }
    vm = slot.get();
  }
  if (!vm->watched) {
    // A VMM adopted after a restart: its serial log is read from the start,
    // so a marker printed while vmlet was down counts.
    vm->watched = watcher_.Watch(handle.vm_dir, SerialLog(handle.vm_dir)).ok();
  }
  return *vm;
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
  // An image CH could not open would fail every boot alike: say which,
  // before launching anything.
  if (std::optional<BootRefusal> refused = CheckImagesReadable(spec, options_.vmm_user)) {
    return BootResult::Refused(*std::move(refused));
  }
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) return boot_id.status();
  const std::string serial = SerialLog(vm_dir);
  for (const std::string& path : {serial, VmmLog(vm_dir), ChEventsFile(vm_dir)}) {
    if (api::Status s = Rotate(path); !s.ok()) return s;
  }
  // The watcher follows the file CH will write: CH opens it with O_TRUNC,
  // which keeps the inode.
  if (api::Status s = CreateEmpty(serial); !s.ok()) return s;
  if (options_.vmm_user &&
      ::chown(serial.c_str(), options_.vmm_user->uid, options_.vmm_user->gid) != 0) {
    return api::Status::Internal("cannot give " + serial + " to user " + options_.vmm_user->user +
                                 ": " + std::strerror(errno));
  }
  if (api::Status s = watcher_.Watch(vm_dir, serial); !s.ok()) {
    return s.WithContext("watching " + serial);
  }
  // The sidecars first: CH connects to their sockets when it boots the VM.
  api::StatusOr<std::vector<Sidecar>> sidecars =
      sidecars_.Start(spec.shared_dirs, vm_dir, deadline);
  if (!sidecars.ok()) {
    watcher_.Unwatch(vm_dir);
    return sidecars.status();
  }
  // CH up to v52 cannot bind over a socket file left by a crash.
  api::Status removed = RemoveFile(socket);
  SpawnRequest request;
  request.argv = ChCommandLine(spec, vm_dir, options_);
  request.output_path = VmmLog(vm_dir);
  api::StatusOr<pid_t> pid =
      removed.ok() ? launcher_.Spawn(request) : removed.WithContext("stale API socket");
  if (!pid.ok()) {
    watcher_.Unwatch(vm_dir);
    (void)sidecars_.StopAll(vm_dir);
    return pid.status();
  }

  std::unique_ptr<Vm> owned = NewVm(*pid, 0, socket);
  owned->child = true;
  owned->watched = true;
  Vm& vm = *owned;
  {
    std::lock_guard lock(mu_);
    vms_[vm_dir] = std::move(owned);
  }
  // The pid is our unreaped child, so this pidfd cannot name another process.
  api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(*pid);
  const int fd = pidfd.ok() ? pidfd->get() : -1;

  api::VmSpec with_serial = spec;
  with_serial.serial_log = serial;
  api::StatusOr<std::optional<BootRefusal>> up = BringUp(vm, with_serial, vm_dir, fd, deadline);
  if (!up.ok() || up->has_value()) {
    Abandon(vm_dir, vm, fd);
    (void)sidecars_.StopAll(vm_dir);
    if (!up.ok()) return up.status();
    return BootResult::Refused(**std::move(up));
  }
  return BootResult::Launched(
      VmmHandle{std::string(name()), {*pid, vm.start_time_ticks}, *boot_id, vm_dir, socket});
}

api::StatusOr<std::optional<BootRefusal>> CloudHypervisorDriver::BringUp(
    Vm& vm, const api::VmSpec& spec, const std::string& vm_dir, int pidfd, Deadline deadline) {
  const std::string who = "cloud-hypervisor pid " + std::to_string(vm.pid);
  auto exited = [&]() {
    ReapIfChild(vm);
    const std::string why = LastLine(Tail(VmmLog(vm_dir)));
    return api::Status::Unavailable(options_.cloud_hypervisor_binary + " exited at once" +
                                    (vm.exit ? " (" + vm.exit->Describe() + ")" : "") +
                                    (why.empty() ? "" : ": " + why));
  };

  // The handle must pass the identity check at once, so wait until /proc
  // shows the command line (for a moment after the spawn it is empty).
  while (true) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(vm.pid);
    if (info.ok() && info->state != 'Z' && CommandLineNamesVmDir(info->cmdline, vm_dir)) {
      vm.start_time_ticks = info->start_time_ticks;
      break;
    }
    if ((info.ok() && info->state == 'Z') || info.status().IsNotFound() ||
        (pidfd >= 0 && Exited(pidfd))) {
      return exited();
    }
    if (clock_.MonotonicNow() >= deadline) {
      return api::Status::DeadlineExceeded(who + " did not show its command line in time");
    }
    Nap(pidfd, milliseconds(2));
  }

  // CH creates its API socket a moment after it starts.
  while (true) {
    api::StatusOr<std::string> version = vm.api->Ping(deadline);
    if (version.ok()) break;
    if (pidfd >= 0 && Exited(pidfd)) return exited();
    if (!version.status().IsRetryable() || clock_.MonotonicNow() >= deadline) {
      return version.status().WithContext(who + " API not up");
    }
    Nap(pidfd, options_.ping_interval);
  }

  if (options_.vmm_user) {
    // CH made its socket with the umask it inherited (077: 0700); a socket
    // needs no execute bit, so it is made 0600, as vmlet's own files are.
    ::chmod(ChApiSocket(vm_dir).c_str(), 0600);
  }
  if (api::Status s = vm.api->Create(ChVmConfig(spec, vm_dir, options_.vmm_user.has_value()), deadline); !s.ok()) {
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

void CloudHypervisorDriver::Abandon(const std::string& vm_dir, Vm& vm, int pidfd) {
  const Deadline give_up = clock_.MonotonicNow() + kReapTimeout;
  if (pidfd >= 0) {
    (void)SignalPidFd(pidfd, SIGKILL);
    WaitExit(pidfd, give_up);
  } else if (!vm.exit) {
    // No pidfd to be had: the pid is our child, not reaped yet, so it cannot
    // have been given to another process.
    ::kill(vm.pid, SIGKILL);
  }
  for (ReapIfChild(vm); !vm.exit && clock_.MonotonicNow() < give_up; ReapIfChild(vm)) {
    Nap(pidfd, milliseconds(5));
  }
  watcher_.Unwatch(vm_dir);
  (void)RemoveFile(ChApiSocket(vm_dir));  // a killed CH leaves it behind
  std::lock_guard lock(mu_);
  auto it = vms_.find(vm_dir);
  if (it != vms_.end() && it->second.get() == &vm) vms_.erase(it);
}

api::StatusOr<Observation> CloudHypervisorDriver::Observe(const ConfirmedVmm& vmm,
                                                          Deadline deadline) {
  const VmmHandle& handle = vmm.handle();
  Vm& vm = VmFor(handle);
  std::optional<ReadyMarkerWatcher::Ready> ready = watcher_.Poll(handle.vm_dir);
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

bool CloudHypervisorDriver::WaitExit(int pidfd, Deadline deadline) const {
  while (true) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - clock_.MonotonicNow());
    pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (n > 0) return true;
    if (n == 0 && left.count() <= 0) return false;
    if (n < 0 && errno != EINTR) return false;
  }
}

api::Status CloudHypervisorDriver::Kill(const ConfirmedVmm& vmm, Deadline deadline) {
  const VmmHandle& handle = vmm.handle();
  if (vmm.pidfd() < 0) return api::Status::FailedPrecondition("no pidfd for cloud-hypervisor");
  if (Exited(vmm.pidfd())) return api::Status::Ok();
  Vm& vm = VmFor(handle);
  vm.kill_requested = true;
  // CH's own forced stop first: it tears the VM down, writes its last
  // events, removes its socket and exits 0. Its answers do not matter, only
  // whether the process goes.
  // At most half the time left, so that SIGKILL has the other half.
  const Deadline now = clock_.MonotonicNow();
  const Deadline api_by = std::min(now + (deadline - now) / 2, now + options_.api_shutdown_timeout);
  (void)vm.api->ShutdownVm(api_by);
  (void)vm.api->ShutdownVmm(api_by);
  if (WaitExit(vmm.pidfd(), api_by)) return api::Status::Ok();
  api::Status s = SignalPidFd(vmm.pidfd(), SIGKILL);
  if (!s.ok() && !s.IsNotFound()) return s.WithContext("SIGKILL cloud-hypervisor");
  if (!WaitExit(vmm.pidfd(), deadline)) {
    return api::Status::DeadlineExceeded("cloud-hypervisor pid " +
                                         std::to_string(handle.process.pid) +
                                         " did not exit after SIGKILL");
  }
  return api::Status::Ok();
}

void CloudHypervisorDriver::Nap(int pidfd, milliseconds timeout) {
  if (pidfd >= 0) {
    pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
    ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    return;
  }
  std::mutex mu;
  std::condition_variable never;
  std::unique_lock lock(mu);
  clock_.WaitUntil(never, lock, clock_.MonotonicNow() + timeout, [] { return false; });
}

void CloudHypervisorDriver::ReapIfChild(Vm& vm) {
  if (!vm.child || vm.exit) return;
  vm.exit = launcher_.Reap(vm.pid);
}

VmmExit CloudHypervisorDriver::ExitState(const VmmHandle& handle) {
  Vm& vm = VmFor(handle);
  ReapIfChild(vm);
  if (vm.kill_requested) return api::VmState::Stopped();
  if (vm.exit && vm.exit->signaled) {
    return api::VmState::Failed("cloud-hypervisor was " + vm.exit->Describe());
  }
  if (vm.exit && vm.exit->code != 0) {
    const std::string log = Tail(VmmLog(handle.vm_dir));
    if (std::optional<std::string> locked = FindDiskLockFailure(log)) {
      return BootRefusal{BootRefusal::Reason::kDiskLocked, *locked};
    }
    const std::string why = LastLine(log);
    return api::VmState::Failed("cloud-hypervisor " + vm.exit->Describe() +
                                (why.empty() ? "" : ": " + why));
  }
  // It exited 0, or how is unknown (adopted after a vmlet restart: only its
  // parent saw its status): what it and the guest wrote last tell.
  const std::string serial = Tail(SerialLog(handle.vm_dir));
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
  std::unique_ptr<Vm> vm;
  {
    std::lock_guard lock(mu_);
    auto it = vms_.find(handle.vm_dir);
    if (it != vms_.end() && it->second->pid == handle.process.pid) {
      vm = std::move(it->second);
      vms_.erase(it);
    }
  }
  if (vm) ReapIfChild(*vm);
  watcher_.Unwatch(handle.vm_dir);
  if (api::Status s = sidecars_.StopAll(handle.vm_dir); !s.ok()) return s;
  // CH removes its socket when it exits in order, not when it is killed.
  return RemoveFile(handle.socket_path);
}

api::StatusOr<std::optional<VmmHandle>> CloudHypervisorDriver::Rediscover(
    const std::string& vm_dir) {
  api::StatusOr<std::vector<pid_t>> pids = proc_fs_.ListPids();
  if (!pids.ok()) return pids.status();
  const std::string binary = fs::path(options_.cloud_hypervisor_binary).filename();
  const std::string socket_arg = "path=" + ChApiSocket(vm_dir);
  std::vector<ProcessInfo> found;
  for (pid_t pid : *pids) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(pid);
    if (!info.ok() || info->state == 'Z' || info->cmdline.empty()) continue;
    const std::vector<std::string>& argv = info->cmdline;
    // CH itself, or `ip netns exec` just before it becomes CH.
    const bool ch = std::any_of(argv.begin(), argv.end(),
                                [&](const auto& a) { return fs::path(a).filename() == binary; });
    if (!ch || std::find(argv.begin(), argv.end(), socket_arg) == argv.end()) continue;
    found.push_back(std::move(info).value());
  }
  if (found.empty()) return std::optional<VmmHandle>();
  if (found.size() > 1) {
    std::string pids_text;
    for (const ProcessInfo& p : found) pids_text += " " + std::to_string(p.pid);
    return api::Status::FailedPrecondition("more than one cloud-hypervisor runs for " + vm_dir +
                                           " (pids" + pids_text + "); refusing to pick one");
  }
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) return boot_id.status();
  return std::optional<VmmHandle>(VmmHandle{std::string(name()),
                                            {found[0].pid, found[0].start_time_ticks},
                                            *boot_id,
                                            vm_dir,
                                            ChApiSocket(vm_dir)});
}

}  // namespace vmlet::drivers
