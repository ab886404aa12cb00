#include "drivers/qemu/qemu_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;

constexpr char kDefaultCmdline[] = "console=ttyS0 panic=-1";
constexpr char kPowerDownLine[] = "reboot: Power down";
constexpr char kRestartLine[] = "reboot: Restarting system";
constexpr char kPanicLine[] = "Kernel panic";
// How much of the end of serial.log and vmm.log ExitState reads.
constexpr std::streamoff kTailBytes = 64 * 1024;

std::string QmpSocket(const std::string& vm_dir) { return vm_dir + "/qmp.sock"; }
std::string VmmLog(const std::string& vm_dir) { return vm_dir + "/vmm.log"; }
std::string SerialLog(const std::string& vm_dir) { return vm_dir + "/serial.log"; }

// QEMU's option syntax: a ',' inside a value is written ",,".
std::string Escape(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

std::string DiskFormat(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  if (in.read(magic, sizeof magic) && std::memcmp(magic, "QFI\xfb", 4) == 0) return "qcow2";
  return "raw";
}

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

// The line of `text` holding `needle`, the last such one, without '\r'.
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

constexpr char kSandbox[] =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

api::Status CreateEmpty(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
  if (!fd.valid()) {
    return api::Status::Internal("cannot create " + path + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

bool Exited(int pidfd) {
  pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, 0) > 0;
}

}  // namespace

uint32_t VsockCid(const std::string& vm_dir) {
  // FNV-1a: stable across vmlet versions and restarts.
  uint32_t hash = 2166136261u;
  for (unsigned char c : vm_dir) {
    hash ^= c;
    hash *= 16777619u;
  }
  // CIDs 0-2 are reserved and 2^32-1 is VMADDR_CID_ANY.
  return 3 + hash % (0xFFFFFFFFu - 3);
}

std::vector<std::string> QemuCommandLine(const api::VmSpec& spec, const std::string& vm_dir,
                                         const std::string& accel, const QemuOptions& options) {
  std::vector<std::string> argv;
  if (spec.netns) {
    argv.insert(argv.end(), {options.ip_binary, "netns", "exec", *spec.netns});
  }
  // After the namespace is entered (which needs root), before QEMU runs.
  if (options.vmm_user) {
    const std::vector<std::string> run_as = RunAsPrefix(*options.vmm_user, options.setpriv_binary);
    argv.insert(argv.end(), run_as.begin(), run_as.end());
  }
  const std::string serial = spec.serial_log.empty() ? SerialLog(vm_dir) : spec.serial_log;
  argv.insert(argv.end(),
              {options.qemu_binary, "-name", spec.ns + "/" + spec.name, "-accel", accel});
  if (accel == "kvm") argv.insert(argv.end(), {"-cpu", "host"});
  argv.insert(argv.end(), {"-m", std::to_string(spec.memory_mb), "-smp", std::to_string(spec.cpus),
                           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                           // seccomp: no obsolete system calls, no set*id, no fork/exec,
                           // no scheduler or priority changes.
                           "-sandbox", kSandbox, "-qmp", "unix:" + Escape(QmpSocket(vm_dir)) + ",server=on,wait=off",
                           "-serial", "file:" + Escape(serial), "-kernel", spec.kernel});
  if (spec.initramfs) argv.insert(argv.end(), {"-initrd", *spec.initramfs});
  argv.insert(argv.end(), {"-append", spec.cmdline.value_or(kDefaultCmdline)});
  auto drive = [&](const std::string& path, const std::string& id, bool read_only) {
    std::string value =
        "file=" + Escape(path) + ",format=" + DiskFormat(path) + ",if=virtio,id=" + id;
    if (read_only) value += ",readonly=on";
    argv.insert(argv.end(), {"-drive", value});
  };
  if (spec.root_disk) drive(*spec.root_disk, "root", false);
  if (spec.data_disk) drive(*spec.data_disk, "data", false);
  if (spec.seed_iso) drive(*spec.seed_iso, "seed", true);
  for (size_t i = 0; i < spec.networks.size(); ++i) {
    const api::NetworkAttachment& net = spec.networks[i];
    const std::string id = "net" + std::to_string(i);
    argv.insert(argv.end(),
                {"-netdev", "tap,id=" + id + ",ifname=" + net.tap + ",script=no,downscript=no"});
    std::string device = "virtio-net-pci,netdev=" + id;
    if (net.mac) device += ",mac=" + *net.mac;
    argv.insert(argv.end(), {"-device", device});
  }
  if (spec.vsock) {
    argv.insert(argv.end(),
                {"-device", "vhost-vsock-pci,guest-cid=" + std::to_string(VsockCid(vm_dir))});
  }
  if (!spec.shared_dirs.empty()) {
    // vhost-user devices need the guest's RAM in memory the sidecars can map.
    argv.insert(argv.end(), {"-object",
                             "memory-backend-memfd,id=mem,size=" + std::to_string(spec.memory_mb) +
                                 "M,share=on",
                             "-numa", "node,memdev=mem"});
    for (size_t i = 0; i < spec.shared_dirs.size(); ++i) {
      const std::string id = "fs" + std::to_string(i);
      const std::string& tag = spec.shared_dirs[i].tag;
      argv.insert(argv.end(), {"-chardev",
                               "socket,id=" + id +
                                   ",path=" + Escape(VirtiofsdSidecars::SocketPath(vm_dir, tag)),
                               "-device", "vhost-user-fs-pci,chardev=" + id + ",tag=" + tag});
    }
  }
  return argv;
}

QemuDriver::QemuDriver(const api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                       QemuOptions options)
    : clock_(clock),
      proc_fs_(proc_fs),
      launcher_(launcher),
      options_(std::move(options)),
      accel_(options_.accel),
      accel_reason_(options_.accel.empty() ? "" : "as configured"),
      watcher_(clock),
      sidecars_(clock, proc_fs, launcher,
                VirtiofsdSidecars::Options{
                    .virtiofsd_binary = options_.virtiofsd_binary,
                    .run_as = options_.vmm_user,
                    .setpriv_binary = options_.setpriv_binary}) {}

QemuDriver::~QemuDriver() { Stop(); }

std::string QemuDriver::ProbeAccel() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm.valid()) {
    accel_reason_ = std::string("/dev/kvm: ") + std::strerror(errno);
    return "tcg";
  }
  // The probe runs as vmlet; the VMs as the VMM user, who must be able to
  // open /dev/kvm too (group kvm).
  if (options_.vmm_user) {
    if (int error = AccessErrno("/dev/kvm", R_OK | W_OK, options_.vmm_user); error != 0) {
      accel_reason_ = "/dev/kvm: user " + options_.vmm_user->user + " cannot open it (" +
                      std::strerror(error) + "; add it to group kvm)";
      return "tcg";
    }
  }
  kvm.Reset();
  const std::string socket =
      options_.probe_dir + "/kvm-probe-" + std::to_string(::getpid()) + ".sock";
  const std::string log = options_.probe_dir + "/kvm-probe.log";
  ::unlink(socket.c_str());
  ::unlink(log.c_str());
  api::StatusOr<pid_t> pid =
      launcher_.Spawn({{options_.qemu_binary, "-accel", "kvm", "-cpu", "host", "-S", "-nodefaults",
                        "-no-user-config", "-display", "none", "-m", "32", "-qmp",
                        "unix:" + Escape(socket) + ",server=on,wait=off"},
                       log,
                       true});
  if (!pid.ok()) {
    accel_reason_ = "KVM probe: " + pid.status().ToString();
    return "tcg";
  }
  api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(*pid);
  const Deadline deadline = clock_.MonotonicNow() + std::chrono::seconds(10);
  std::string verdict = "tcg";
  accel_reason_ = "KVM probe: QEMU did not come up";
  while (pidfd.ok() && pidfd->valid() && clock_.MonotonicNow() < deadline) {
    api::StatusOr<QmpClientPtr> qmp = QmpClient::Connect(socket, deadline);
    if (qmp.ok()) {
      api::StatusOr<nlohmann::json> status = (*qmp)->Execute("query-status", nullptr, deadline);
      if (status.ok() && status->value("status", "") == "prelaunch") {
        verdict = "kvm";
        accel_reason_ = "KVM probe: QEMU runs with -accel kvm -cpu host";
      }
      (void)(*qmp)->Execute("quit", nullptr, deadline);
      break;
    }
    if (Exited(pidfd->get())) break;
    pollfd pfd{.fd = pidfd->get(), .events = POLLIN, .revents = 0};
    ::poll(&pfd, 1, 10);
  }
  if (pidfd.ok() && pidfd->valid() && !WaitExit(pidfd->get(), deadline)) {
    (void)SignalPidFd(pidfd->get(), SIGKILL);
    WaitExit(pidfd->get(), clock_.MonotonicNow() + std::chrono::seconds(5));
  }
  std::optional<ExitStatus> exit = launcher_.Reap(*pid);
  if (verdict == "kvm" && (!exit || exit->signaled || exit->code != 0)) verdict = "tcg";
  if (verdict == "tcg") {
    const std::string why = LastLine(Tail(log));
    accel_reason_ = "KVM probe failed" + (exit ? " (QEMU " + exit->Describe() + ")" : "") +
                    (why.empty() ? "" : ": " + why);
  }
  ::unlink(socket.c_str());
  return verdict;
}

api::Status QemuDriver::Start() {
  if (accel_.empty()) accel_ = ProbeAccel();
  return watcher_.Start([this](const std::string& vm_dir) {
    ChangeListener listener;
    {
      std::lock_guard lock(mu_);
      listener = listener_;
    }
    if (listener) listener(vm_dir);
  });
}

void QemuDriver::Stop() { watcher_.Stop(); }

void QemuDriver::SetChangeListener(ChangeListener listener) {
  std::lock_guard lock(mu_);
  listener_ = std::move(listener);
}

std::vector<api::FieldError> QemuDriver::CheckSpec(const api::VmSpec& spec) const {
  std::vector<api::FieldError> errors;
  auto reject = [&](std::string field, std::string reason) {
    errors.push_back({std::move(field), std::move(reason)});
  };
  if (spec.rosetta) reject("spec.rosetta", "Rosetta exists only on macOS (apple-vz)");
  if (spec.efi_variable_store) {
    reject("spec.efiVariableStore",
           "the qemu driver boots the kernel directly and keeps no EFI variable store");
  }
  if (spec.machine_id) reject("spec.machineId", "only the apple-vz driver uses a machine id");
  if (!spec.shared_dirs.empty() && ::access(options_.virtiofsd_binary.c_str(), X_OK) != 0) {
    reject("spec.sharedDirs", "virtiofsd is not at " + options_.virtiofsd_binary +
                                  " (Debian: package qemu-system-common)");
  }
  if (spec.vsock && ::access("/dev/vhost-vsock", R_OK | W_OK) != 0) {
    reject("spec.vsock", "this host has no usable /dev/vhost-vsock (modprobe vhost_vsock)");
  }
  return errors;
}

QemuDriver::Vm& QemuDriver::VmFor(const VmmHandle& handle) {
  Vm* vm = nullptr;
  {
    std::lock_guard lock(mu_);
    std::unique_ptr<Vm>& slot = vms_[handle.vm_dir];
    if (!slot || slot->pid != handle.process.pid ||
        slot->start_time_ticks != handle.process.start_time_ticks) {
      slot = std::make_unique<Vm>();
      slot->pid = handle.process.pid;
      slot->start_time_ticks = handle.process.start_time_ticks;
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

api::StatusOr<BootResult> QemuDriver::Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                           Deadline deadline) {
  // An image QEMU could not open would fail every boot alike: say which,
  // before launching anything.
  if (std::optional<BootRefusal> refused = CheckImagesReadable(spec, options_.vmm_user)) {
    return BootResult::Refused(*std::move(refused));
  }
  const std::string serial = SerialLog(vm_dir);
  for (const std::string& path : {serial, VmmLog(vm_dir)}) {
    if (api::Status s = Rotate(path); !s.ok()) return s;
  }
  // The watcher follows the file QEMU will write: QEMU opens it with O_TRUNC,
  // which keeps the inode. The VMM user must be able to open it.
  if (api::Status s = CreateEmpty(serial); !s.ok()) return s;
  if (options_.vmm_user &&
      ::chown(serial.c_str(), options_.vmm_user->uid, options_.vmm_user->gid) != 0) {
    return api::Status::Internal("cannot give " + serial + " to user " + options_.vmm_user->user +
                                 ": " + std::strerror(errno));
  }
  if (api::Status s = watcher_.Watch(vm_dir, serial); !s.ok()) {
    return s.WithContext("watching " + serial);
  }
  const std::string socket = QmpSocket(vm_dir);
  if (::unlink(socket.c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot remove the stale " + socket + ": " + std::strerror(errno));
  }
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) return boot_id.status();
  // The sidecars first: QEMU connects to their sockets as it starts.
  api::StatusOr<std::vector<Sidecar>> sidecars =
      sidecars_.Start(spec.shared_dirs, vm_dir, deadline);
  if (!sidecars.ok()) return sidecars.status();

  api::VmSpec with_serial = spec;
  with_serial.serial_log = serial;
  SpawnRequest request;
  request.argv = QemuCommandLine(with_serial, vm_dir, accel_, options_);
  request.output_path = VmmLog(vm_dir);
  api::StatusOr<pid_t> pid = launcher_.Spawn(request);
  if (!pid.ok()) {
    (void)sidecars_.StopAll(vm_dir);
    return pid.status();
  }

  auto vm = std::make_unique<Vm>();
  vm->pid = *pid;
  vm->child = true;
  vm->watched = true;
  Vm* raw = vm.get();
  {
    std::lock_guard lock(mu_);
    vms_[vm_dir] = std::move(vm);
  }

  // The handle must pass the identity check at once, so wait until /proc
  // shows the command line (for a moment after the spawn it is empty). The
  // pidfd both paces the wait and tells of an early exit.
  api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(*pid);
  while (true) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(*pid);
    if (info.ok() && info->state != 'Z' && CommandLineNamesVmDir(info->cmdline, vm_dir)) {
      raw->start_time_ticks = info->start_time_ticks;
      break;
    }
    const bool exited = (info.ok() && info->state == 'Z') || info.status().IsNotFound() ||
                        (pidfd.ok() && pidfd->valid() && Exited(pidfd->get()));
    if (exited) {
      ReapIfChild(*raw);
      (void)sidecars_.StopAll(vm_dir);
      const std::string log = Tail(VmmLog(vm_dir));
      if (std::optional<std::string> locked = FindDiskLockFailure(log)) {
        return BootResult::Refused({BootRefusal::Reason::kDiskLocked, *locked});
      }
      const std::string why = LastLine(log);
      return api::Status::Unavailable(options_.qemu_binary + " exited at once" +
                                      (raw->exit ? " (" + raw->exit->Describe() + ")" : "") +
                                      (why.empty() ? "" : ": " + why));
    }
    if (clock_.MonotonicNow() >= deadline) {
      // No handle is returned, so nothing would ever look after this QEMU:
      // it must not outlive the failed boot. It is our unreaped child, so
      // the pidfd names it and nothing else.
      if (pidfd.ok() && pidfd->valid()) {
        (void)SignalPidFd(pidfd->get(), SIGKILL);
        WaitExit(pidfd->get(), clock_.MonotonicNow() + std::chrono::seconds(5));
      }
      ReapIfChild(*raw);
      (void)sidecars_.StopAll(vm_dir);
      return api::Status::DeadlineExceeded("qemu pid " + std::to_string(*pid) +
                                           " did not show its command line in time; killed");
    }
    if (pidfd.ok() && pidfd->valid()) {
      pollfd pfd{.fd = pidfd->get(), .events = POLLIN, .revents = 0};
      ::poll(&pfd, 1, 2);
    }
  }
  return BootResult::Launched(
      VmmHandle{"qemu", {*pid, raw->start_time_ticks}, *boot_id, vm_dir, socket});
}

api::StatusOr<nlohmann::json> QemuDriver::Qmp(Vm& vm, const VmmHandle& handle,
                                              const std::string& command, Deadline deadline) {
  // One connection per command: QEMU serves one QMP client at a time, so a
  // connection vmlet kept open would lock operators (and their tools) out of
  // the monitor. A connection costs about a millisecond.
  if (options_.vmm_user) {
    // QEMU made the socket with the umask it inherited (077: 0700); a
    // socket needs no execute bit, so it is made 0600, as vmlet's own
    // files are. Cheap, and idempotent.
    struct stat st {};
    if (::lstat(handle.socket_path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
        (st.st_mode & 07777) != 0600) {
      ::chmod(handle.socket_path.c_str(), 0600);
    }
  }
  api::StatusOr<QmpClientPtr> client =
      QmpClient::Connect(handle.socket_path, deadline, [&vm](const nlohmann::json& event) {
        if (event.value("event", "") == "SHUTDOWN" && event.contains("data")) {
          vm.shutdown_reason = event["data"].value("reason", "");
        }
      });
  if (!client.ok()) return client.status();
  return (*client)->Execute(command, nullptr, deadline);
}

api::StatusOr<Observation> QemuDriver::Observe(const ConfirmedVmm& vmm, Deadline deadline) {
  const VmmHandle& handle = vmm.handle();
  Vm& vm = VmFor(handle);
  std::optional<ReadyMarkerWatcher::Ready> ready = watcher_.Poll(handle.vm_dir);
  api::StatusOr<nlohmann::json> status = Qmp(vm, handle, "query-status", deadline);
  if (!status.ok()) {
    // QEMU creates its QMP socket while it starts; until then it is Starting.
    if (!ready && status.status().IsRetryable()) {
      return Observation{api::VmState::Starting(), std::nullopt, std::chrono::milliseconds(100)};
    }
    return status.status().WithContext("QMP query-status");
  }
  const std::string run_state = status->value("status", "");
  if (run_state == "paused" || run_state == "suspended") {
    return Observation{api::VmState::Paused(), std::nullopt, std::nullopt};
  }
  if (run_state == "running") {
    if (ready) return Observation{api::VmState::Ready(ready->ip), ready->seen_at, std::nullopt};
    return Observation{api::VmState::Starting(), std::nullopt, std::nullopt};
  }
  if (run_state == "guest-panicked" || run_state == "internal-error" || run_state == "io-error" ||
      run_state == "watchdog") {
    // QEMU is alive but the guest stopped: shown, and looked at again, but
    // not restarted behind the operator's back.
    return Observation{api::VmState::Failed("QEMU run state " + run_state), std::nullopt,
                       std::chrono::milliseconds(5000)};
  }
  // prelaunch, inmigrate, restore-vm, shutdown (exiting): transient.
  return Observation{api::VmState::Starting(), std::nullopt, std::chrono::milliseconds(100)};
}

api::Status QemuDriver::Pause(const ConfirmedVmm& vmm, Deadline deadline) {
  api::StatusOr<nlohmann::json> r = Qmp(VmFor(vmm.handle()), vmm.handle(), "stop", deadline);
  return r.ok() ? api::Status::Ok() : r.status().WithContext("QMP stop");
}

api::Status QemuDriver::Resume(const ConfirmedVmm& vmm, Deadline deadline) {
  api::StatusOr<nlohmann::json> r = Qmp(VmFor(vmm.handle()), vmm.handle(), "cont", deadline);
  return r.ok() ? api::Status::Ok() : r.status().WithContext("QMP cont");
}

api::Status QemuDriver::Shutdown(const ConfirmedVmm& vmm, Deadline deadline) {
  api::StatusOr<nlohmann::json> r =
      Qmp(VmFor(vmm.handle()), vmm.handle(), "system_powerdown", deadline);
  return r.ok() ? api::Status::Ok() : r.status().WithContext("QMP system_powerdown");
}

bool QemuDriver::WaitExit(int pidfd, Deadline deadline) const {
  while (true) {
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_.MonotonicNow());
    pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (n > 0) return true;
    if (n == 0 && left.count() <= 0) return false;
    if (n < 0 && errno != EINTR) return false;
  }
}

api::Status QemuDriver::Kill(const ConfirmedVmm& vmm, Deadline deadline) {
  const VmmHandle& handle = vmm.handle();
  if (vmm.pidfd() < 0) return api::Status::FailedPrecondition("no pidfd for qemu");
  if (Exited(vmm.pidfd())) return api::Status::Ok();
  Vm& vm = VmFor(handle);
  const Deadline quit_by = std::min(deadline, clock_.MonotonicNow() + options_.quit_timeout);
  // QEMU's own forced stop first: it flushes and removes its socket.
  if (Qmp(vm, handle, "quit", quit_by).ok() && WaitExit(vmm.pidfd(), quit_by)) {
    return api::Status::Ok();
  }
  api::Status s = SignalPidFd(vmm.pidfd(), SIGKILL);
  if (!s.ok() && !s.IsNotFound()) return s.WithContext("SIGKILL qemu");
  if (!WaitExit(vmm.pidfd(), deadline)) {
    return api::Status::DeadlineExceeded("qemu pid " + std::to_string(handle.process.pid) +
                                         " did not exit after SIGKILL");
  }
  return api::Status::Ok();
}

void QemuDriver::ReapIfChild(Vm& vm) {
  if (!vm.child || vm.exit) return;
  vm.exit = launcher_.Reap(vm.pid);
}

VmmExit QemuDriver::ExitState(const VmmHandle& handle) {
  Vm& vm = VmFor(handle);
  ReapIfChild(vm);
  const std::string serial = Tail(SerialLog(handle.vm_dir));
  if (vm.exit && vm.exit->signaled) {
    return api::VmState::Failed("qemu was " + vm.exit->Describe());
  }
  // An image lock refused during start-up (vmm.log is this boot's: it is
  // rotated before each one). QEMU exits 1 then.
  if (std::optional<std::string> locked = FindDiskLockFailure(Tail(VmmLog(handle.vm_dir)))) {
    return BootRefusal{BootRefusal::Reason::kDiskLocked, *locked};
  }
  if (vm.exit && vm.exit->code != 0) {
    const std::string why = LastLine(Tail(VmmLog(handle.vm_dir)));
    return api::VmState::Failed("qemu " + vm.exit->Describe() + (why.empty() ? "" : ": " + why));
  }
  // QEMU exited 0, or how is unknown: what the guest printed last tells.
  if (serial.find(kPowerDownLine) != std::string::npos) return api::VmState::Stopped();
  if (std::string line = LineWith(serial, kPanicLine); !line.empty()) {
    return api::VmState::Failed("the guest kernel panicked: " + line);
  }
  if (serial.find(kRestartLine) != std::string::npos) {
    return api::VmState::Failed("the guest reset itself (QEMU runs with -no-reboot, so it exited)");
  }
  if (vm.exit) {
    return api::VmState::Failed(
        "qemu exited with status 0 but the guest did not power off " +
        std::string("(stopped from outside?") +
        (vm.shutdown_reason.empty() ? "" : " reason " + vm.shutdown_reason) + ")");
  }
  return api::VmState::Failed(
      "qemu exited without the guest powering off (vmlet did not launch this qemu, so its exit "
      "status is unknown)");
}

api::Status QemuDriver::Cleanup(const VmmHandle& handle, Deadline deadline) {
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
  // QEMU removes its socket when it exits cleanly, not when it is killed.
  if (::unlink(handle.socket_path.c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot remove " + handle.socket_path + ": " +
                                 std::strerror(errno));
  }
  return api::Status::Ok();
}

api::StatusOr<std::optional<VmmHandle>> QemuDriver::Rediscover(const std::string& vm_dir) {
  api::StatusOr<std::vector<pid_t>> pids = proc_fs_.ListPids();
  if (!pids.ok()) return pids.status();
  const std::string binary = fs::path(options_.qemu_binary).filename();
  std::vector<ProcessInfo> found;
  for (pid_t pid : *pids) {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(pid);
    if (!info.ok() || info->state == 'Z' || info->cmdline.empty()) continue;
    // QEMU itself, or `ip netns exec` just before it becomes QEMU.
    const bool qemu = std::any_of(info->cmdline.begin(), info->cmdline.end(),
                                  [&](const auto& a) { return fs::path(a).filename() == binary; });
    if (!qemu || !CommandLineNamesVmDir(info->cmdline, vm_dir)) continue;
    if (std::find(info->cmdline.begin(), info->cmdline.end(),
                  "unix:" + Escape(QmpSocket(vm_dir)) + ",server=on,wait=off") ==
        info->cmdline.end()) {
      continue;  // names the directory, but is not a VMM vmlet launched there
    }
    found.push_back(std::move(info).value());
  }
  if (found.empty()) return std::optional<VmmHandle>();
  if (found.size() > 1) {
    std::string pids_text;
    for (const ProcessInfo& p : found) pids_text += " " + std::to_string(p.pid);
    return api::Status::FailedPrecondition("more than one qemu runs for " + vm_dir + " (pids" +
                                           pids_text + "); refusing to pick one");
  }
  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) return boot_id.status();
  return std::optional<VmmHandle>(VmmHandle{
      "qemu", {found[0].pid, found[0].start_time_ticks}, *boot_id, vm_dir, QmpSocket(vm_dir)});
}

}  // namespace vmlet::drivers
