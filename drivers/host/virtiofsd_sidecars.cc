#include "drivers/host/virtiofsd_sidecars.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"

namespace vmlet::drivers {
namespace {

// Where virtiofsd (QEMU 7.2's) puts its pid files; root's.
constexpr char kPidFileDir[] = "/var/run/virtiofsd";

using nlohmann::json;

std::string LastLineOf(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

bool IsSocket(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

}  // namespace

VirtiofsdSidecars::VirtiofsdSidecars(const api::Clock& clock, const ProcFs& proc_fs,
                                     ProcessLauncher& launcher, Options options)
    : clock_(clock),
      waiter_(clock),
      proc_fs_(proc_fs),
      launcher_(launcher),
      options_(std::move(options)) {}

std::string VirtiofsdSidecars::SocketPath(const std::string& vm_dir, const std::string& tag) {
  return vm_dir + "/virtiofs-" + tag + ".sock";
}

std::string VirtiofsdSidecars::RecordPath(const std::string& vm_dir) {
  return vm_dir + "/sidecars.json";
}

std::vector<Sidecar> VirtiofsdSidecars::Load(const std::string& vm_dir) const {
  std::ifstream in(RecordPath(vm_dir));
  std::stringstream text;
  text << in.rdbuf();
  const json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  std::vector<Sidecar> out;
  if (!j.is_array()) return out;  // none, or unreadable: nothing provable to stop
  for (const json& s : j) {
    if (!s.is_object()) continue;
    Sidecar sidecar;
    sidecar.tag = s.value("tag", "");
    sidecar.pid = s.value("pid", 0);
    sidecar.start_time_ticks = s.value("startTimeTicks", uint64_t{0});
    sidecar.socket = s.value("socket", "");
    if (sidecar.pid > 0 && !sidecar.socket.empty()) out.push_back(std::move(sidecar));
  }
  return out;
}

api::Status VirtiofsdSidecars::Save(const std::string& vm_dir,
                                    const std::vector<Sidecar>& sidecars) const {
  json j = json::array();
  for (const Sidecar& s : sidecars) {
    j.push_back({{"tag", s.tag},
                 {"pid", s.pid},
                 {"startTimeTicks", s.start_time_ticks},
                 {"socket", s.socket}});
  }
  const std::string path = RecordPath(vm_dir);
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << j.dump(2) << "\n";
    if (!out.flush()) return api::Status::Internal("cannot write " + temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    return api::Status::Internal("cannot rename " + temp + ": " + std::strerror(errno));
  }
  return api::Status::Ok();
}

bool VirtiofsdSidecars::Confirmed(const Sidecar& sidecar) const {
  api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(sidecar.pid);
  if (!info.ok() || info->state == 'Z') return false;
  if (info->start_time_ticks != sidecar.start_time_ticks) return false;
  for (const std::string& arg : info->cmdline) {
    if (arg.find(sidecar.socket) != std::string::npos) return true;
  }
  return false;
}

std::vector<Sidecar> VirtiofsdSidecars::Running(const std::string& vm_dir) const {
  std::vector<Sidecar> out;
  for (Sidecar& s : Load(vm_dir)) {
    if (Confirmed(s)) out.push_back(std::move(s));
  }
  return out;
}

void VirtiofsdSidecars::Stop(const Sidecar& sidecar) {
  api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(sidecar.pid);
  // Confirmed again with the pidfd held: the pidfd now pins the process that
  // was checked, so the signal cannot reach a newer owner of the pid.
  if (pidfd.ok() && pidfd->valid() && Confirmed(sidecar)) {
    (void)SignalPidFd(pidfd->get(), SIGTERM);
    if (!waiter_.WaitReadable(pidfd->get(), clock_.MonotonicNow() + options_.stop_timeout)) {
      (void)SignalPidFd(pidfd->get(), SIGKILL);
      (void)waiter_.WaitReadable(pidfd->get(), clock_.MonotonicNow() + options_.stop_timeout);
    }
    launcher_.Reap(sidecar.pid);  // a child of this vmlet: collect it; else a no-op
  }
  ::unlink(sidecar.socket.c_str());
}

api::Status VirtiofsdSidecars::StopAll(const std::string& vm_dir) {
  for (const Sidecar& s : Load(vm_dir)) Stop(s);
  if (::unlink(RecordPath(vm_dir).c_str()) != 0 && errno != ENOENT) {
    return api::Status::Internal("cannot remove " + RecordPath(vm_dir) + ": " +
                                 std::strerror(errno));
  }
  return api::Status::Ok();
}

api::StatusOr<std::vector<std::string>> VirtiofsdSidecars::CommandLine(
    const api::SharedDir& dir, const std::string& vm_dir, const std::string& socket) const {
  if (!options_.run_as && dir.read_only) {
    return std::vector<std::string>{
        options_.unshare_binary, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
        // One argument, two lines.
        // NOLINTNEXTLINE(bugprone-suspicious-missing-comma)
        "mount --bind -o ro -- \"$1\" \"$1\" && exec \"$0\" --socket-path=\"$2\" "
        "-o source=\"$1\" -o sandbox=chroot -o cache=auto",
        options_.virtiofsd_binary, dir.host_path, socket};
  }
  if (!options_.run_as) {
    return std::vector<std::string>{options_.virtiofsd_binary,
                                    "--socket-path=" + socket,
                                    "-o",
                                    "source=" + dir.host_path,
                                    "-o",
                                    "cache=auto"};
  }
  const std::string run_dir = vm_dir + "/virtiofsd-run";
  if (::mkdir(run_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return api::Status::Internal("cannot create " + run_dir + ": " + std::strerror(errno));
  }
  if (::chown(run_dir.c_str(), options_.run_as->uid, options_.run_as->gid) != 0) {
    return api::Status::Internal("cannot give " + run_dir + " to user " + options_.run_as->user +
                                 ": " + std::strerror(errno));
  }
  // The mount point of the pid file directory must exist; virtiofsd
  // running as root elsewhere makes it too.
  if (::mkdir(kPidFileDir, 0700) != 0 && errno != EEXIST) {
    return api::Status::Internal(std::string("cannot create ") + kPidFileDir + ": " +
                                 std::strerror(errno));
  }
  // Without supplementary groups: in a user namespace virtiofsd could
  // not drop them (setgroups is denied there), and it would exit.
  std::vector<std::string> argv =
      RunAsPrefix(*options_.run_as, options_.setpriv_binary, /*with_groups=*/false);
  argv.insert(
      argv.end(),
      {options_.unshare_binary, "--user", "--map-root-user", "--mount", "--propagation", "private",
       "--", "/bin/sh", "-c",
       std::string("mount --bind -- \"$3\" ") + kPidFileDir + " && " +
           (dir.read_only ? "mount --bind -o ro -- \"$1\" \"$1\" && " : "") +
           "exec \"$0\" --socket-path=\"$2\" -o source=\"$1\" -o sandbox=chroot -o cache=auto",
       options_.virtiofsd_binary, dir.host_path, socket, run_dir});
  return argv;
}

api::StatusOr<std::vector<Sidecar>> VirtiofsdSidecars::Start(
    const std::vector<api::SharedDir>& dirs, const std::string& vm_dir,
    api::Clock::MonotonicTime deadline) {
  if (api::Status s = StopAll(vm_dir); !s.ok()) return s;
  std::vector<Sidecar> started;
  auto fail = [&](api::Status why) {
    for (const Sidecar& s : started) Stop(s);
    ::unlink(RecordPath(vm_dir).c_str());
    return why;
  };
  for (const api::SharedDir& dir : dirs) {
    Sidecar sidecar;
    sidecar.tag = dir.tag;
    sidecar.socket = SocketPath(vm_dir, dir.tag);
    ::unlink(sidecar.socket.c_str());
    const std::string log = vm_dir + "/virtiofsd-" + dir.tag + ".log";
    api::StatusOr<std::vector<std::string>> argv = CommandLine(dir, vm_dir, sidecar.socket);
    if (!argv.ok()) return fail(argv.status());
    SpawnRequest request;
    request.argv = std::move(argv).value();
    request.output_path = log;
    api::StatusOr<pid_t> pid = launcher_.Spawn(request);
    if (!pid.ok()) return fail(pid.status().WithContext("virtiofsd for sharedDir " + dir.tag));
    sidecar.pid = *pid;
    api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(*pid);
    // Tracked from the first moment, so a failure below still ends it.
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(*pid);
    if (info.ok()) sidecar.start_time_ticks = info->start_time_ticks;
    started.push_back(sidecar);
    if (api::Status s = Save(vm_dir, started); !s.ok()) return fail(s);
    while (!IsSocket(sidecar.socket)) {
      const bool exited = !pidfd.ok() || !pidfd->valid() || FdWaiter::IsReadable(pidfd->get());
      if (exited || clock_.MonotonicNow() >= deadline) {
        std::optional<ExitStatus> status = exited ? launcher_.Reap(*pid) : std::nullopt;
        const std::string last = LastLineOf(log);
        return fail(api::Status::Unavailable(
            "virtiofsd for sharedDir " + dir.tag + " (" + dir.host_path + ") " +
            (exited ? "exited" + (status ? " (" + status->Describe() + ")" : std::string())
                    : std::string("did not create its socket in time")) +
            (last.empty() ? "" : ": " + last)));
      }
      (void)waiter_.WaitReadable(pidfd->get(),
                                 clock_.MonotonicNow() + std::chrono::milliseconds(2));
    }
    // The VMM user's virtiofsd made its socket with the umask it inherited
    // (077: 0700); a socket needs no execute bit.
    if (options_.run_as && ::chmod(sidecar.socket.c_str(), 0600) != 0) {
      return fail(
          api::Status::Internal("cannot chmod " + sidecar.socket + ": " + std::strerror(errno)));
    }
  }
  return started;
}

}  // namespace vmlet::drivers
