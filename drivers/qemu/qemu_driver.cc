#include "drivers/qemu/qemu_driver.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"
#include "drivers/host/vmm_files.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;

constexpr char kDefaultCmdline[] = "console=ttyS0 panic=-1";
constexpr char kPowerDownLine[] = "reboot: Power down";
constexpr char kRestartLine[] = "reboot: Restarting system";
constexpr char kPanicLine[] = "Kernel panic";
// How often the KVM probe tries QMP while its QEMU comes up.
constexpr std::chrono::milliseconds kProbeRecheck{10};
std::string QmpSocket(const std::string& vm_dir) { return vm_dir + "/qmp.sock"; }

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

// The -qmp value: the QMP server on <vm_dir>/qmp.sock.
std::string QmpArg(const std::string& vm_dir) {
  return "unix:" + Escape(QmpSocket(vm_dir)) + ",server=on,wait=off";
}

constexpr char kSandbox[] =
    "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

}  // namespace

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
  const std::string serial =
      spec.serial_log.empty() ? VmmFiles(vm_dir).serial_log() : spec.serial_log;
  argv.insert(argv.end(),
              {options.qemu_binary, "-name", spec.ns + "/" + spec.name, "-accel", accel});
  if (accel == "kvm") argv.insert(argv.end(), {"-cpu", "host"});
  argv.insert(argv.end(), {"-m", std::to_string(spec.memory_mb), "-smp", std::to_string(spec.cpus),
                           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                           // seccomp: no obsolete system calls, no set*id, no fork/exec,
                           // no scheduler or priority changes.
                           "-sandbox", kSandbox, "-qmp", QmpArg(vm_dir), "-serial",
                           "file:" + Escape(serial), "-kernel", spec.kernel});
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

QemuDriver::QemuDriver(api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                       QemuOptions options)
    : clock_(clock),
      proc_fs_(proc_fs),
      launcher_(launcher),
      options_(std::move(options)),
      accel_(options_.accel),
      accel_reason_(options_.accel.empty() ? "" : "as configured"),
      supervisor_(clock, proc_fs, launcher,
                  VmmSupervisor::Options::Of("qemu", options_.qemu_binary, options_)) {}

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
    api::StatusOr<QmpClientPtr> qmp = QmpClient::Connect(socket, clock_, deadline);
    if (qmp.ok()) {
      api::StatusOr<nlohmann::json> status = (*qmp)->Execute("query-status", nullptr, deadline);
      if (status.ok() && status->value("status", "") == "prelaunch") {
        verdict = "kvm";
        accel_reason_ = "KVM probe: QEMU runs with -accel kvm -cpu host";
      }
      (void)(*qmp)->Execute("quit", nullptr, deadline);
      break;
    }
    if (supervisor_.WaitExit(pidfd->get(), clock_.MonotonicNow() + kProbeRecheck)) break;
  }
  if (pidfd.ok() && pidfd->valid() && !supervisor_.WaitExit(pidfd->get(), deadline)) {
    (void)SignalPidFd(pidfd->get(), SIGKILL);
    (void)supervisor_.WaitExit(pidfd->get(), clock_.MonotonicNow() + std::chrono::seconds(5));
  }
  std::optional<ExitStatus> exit = launcher_.Reap(*pid);
  if (verdict == "kvm" && (!exit || exit->signaled || exit->code != 0)) verdict = "tcg";
  if (verdict == "tcg") {
    const std::string why = LastLine(FileTail(log));
    accel_reason_ = "KVM probe failed" + (exit ? " (QEMU " + exit->Describe() + ")" : "") +
                    (why.empty() ? "" : ": " + why);
  }
  ::unlink(socket.c_str());
  return verdict;
}

api::Status QemuDriver::Start() {
  if (accel_.empty()) accel_ = ProbeAccel();
  return supervisor_.Start();
}

void QemuDriver::Stop() { supervisor_.Stop(); }

void QemuDriver::SetChangeListener(ChangeListener listener) {
  supervisor_.SetChangeListener(std::move(listener));
}

std::vector<api::FieldError> QemuDriver::CheckSpec(const api::VmSpec& spec) const {
  std::vector<api::FieldError> errors = supervisor_.CheckCommonSpec(spec);
  auto reject = [&](std::string field, std::string reason) {
    errors.push_back({std::move(field), std::move(reason)});
  };
  if (spec.vsock && ::access("/dev/vhost-vsock", R_OK | W_OK) != 0) {
    reject("spec.vsock", "this host has no usable /dev/vhost-vsock (modprobe vhost_vsock)");
  }
  return errors;
}

QemuDriver::Vm& QemuDriver::VmFor(const VmmHandle& handle) {
  Vm& vm = vms_.For(handle, [](const VmmHandle&) { return std::make_unique<Vm>(); });
  supervisor_.Adopt(vm, handle.vm_dir);
  return vm;
}

api::StatusOr<BootResult> QemuDriver::Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                           Deadline deadline) {
  const std::string socket = QmpSocket(vm_dir);
  api::StatusOr<std::optional<BootRefusal>> prepared =
      supervisor_.PrepareBoot(spec, vm_dir, {}, socket, deadline);
  if (!prepared.ok()) return prepared.status();
  if (prepared->has_value()) return BootResult::Refused(**std::move(prepared));
  api::VmSpec with_serial = spec;
  with_serial.serial_log = VmmFiles(vm_dir).serial_log();
  auto vm = std::make_unique<Vm>();
  UniqueFd pidfd;
  api::StatusOr<BootResult> launched =
      supervisor_.Launch(*vm, QemuCommandLine(with_serial, vm_dir, accel_, options_), vm_dir,
                         socket, deadline, &pidfd);
  if (launched.ok() && launched->handle()) vms_.Put(vm_dir, std::move(vm));
  return launched;
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
      QmpClient::Connect(handle.socket_path, clock_, deadline, [&vm](const nlohmann::json& event) {
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
  std::optional<ReadyMarkerWatcher::Ready> ready = supervisor_.ReadyMarker(handle.vm_dir);
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

api::Status QemuDriver::Kill(const ConfirmedVmm& vmm, Deadline deadline) {
  return supervisor_.Kill(vmm, deadline, [&]() -> std::optional<Deadline> {
    const Deadline quit_by = std::min(deadline, clock_.MonotonicNow() + options_.quit_timeout);
    // QEMU's own forced stop first: it flushes and removes its socket.
    if (!Qmp(VmFor(vmm.handle()), vmm.handle(), "quit", quit_by).ok()) return std::nullopt;
    return quit_by;
  });
}

VmmExit QemuDriver::ExitState(const VmmHandle& handle) {
  Vm& vm = VmFor(handle);
  supervisor_.Reap(vm);
  const VmmFiles files(handle.vm_dir);
  const std::string serial = files.SerialTail();
  if (vm.exit && vm.exit->signaled) {
    return api::VmState::Failed("qemu was " + vm.exit->Describe());
  }
  // An image lock refused during start-up (vmm.log is this boot's: it is
  // rotated before each one). QEMU exits 1 then.
  if (std::optional<std::string> locked = FindDiskLockFailure(files.VmmLogTail())) {
    return BootRefusal{BootRefusal::Reason::kDiskLocked, *locked};
  }
  if (vm.exit && vm.exit->code != 0) {
    const std::string why = LastLine(files.VmmLogTail());
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
  std::unique_ptr<Vm> vm = vms_.Take(handle);
  return supervisor_.Cleanup(vm.get(), handle);
}

api::StatusOr<std::optional<VmmHandle>> QemuDriver::Rediscover(const std::string& vm_dir) {
  return supervisor_.Rediscover(vm_dir, QmpArg(vm_dir), QmpSocket(vm_dir));
}

}  // namespace vmlet::drivers
