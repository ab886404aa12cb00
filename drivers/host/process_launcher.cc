#include "drivers/host/process_launcher.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

extern char** environ;

namespace vmlet::drivers {
namespace {

// Owns posix_spawn's attribute and file-action objects.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  SpawnSetup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

}  // namespace

std::string ExitStatus::Describe() const {
  if (!signaled) return "exited with status " + std::to_string(code);
  const char* abbrev = sigabbrev_np(code);
  return "killed by signal " + std::to_string(code) +
         (abbrev != nullptr ? " (SIG" + std::string(abbrev) + ")" : "");
}

api::StatusOr<pid_t> PosixProcessLauncher::Spawn(const SpawnRequest& request) {
  if (request.argv.empty()) return api::Status::InvalidArgument("nothing to spawn: empty argv");
  SpawnSetup setup;

  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (request.new_session) flags |= POSIX_SPAWN_SETSID;
  posix_spawnattr_setflags(&setup.attr, flags);
  // vmlet's threads block SIGTERM and SIGINT (main takes them with sigwait);
  // a VMM inheriting that mask would ignore a polite stop.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&setup.attr, &none);
  sigset_t defaults;
  sigfillset(&defaults);
  sigdelset(&defaults, SIGKILL);
  sigdelset(&defaults, SIGSTOP);
  posix_spawnattr_setsigdefault(&setup.attr, &defaults);

  posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  const std::string out = request.output_path.empty() ? "/dev/null" : request.output_path;
  posix_spawn_file_actions_addopen(&setup.actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0640);
  posix_spawn_file_actions_adddup2(&setup.actions, 1, 2);
  // Descriptors opened without O_CLOEXEC by a library must not leak into a
  // process that may run for months.
  posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);

  std::vector<char*> argv;
  argv.reserve(request.argv.size() + 1);
  for (const std::string& arg : request.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  pid_t pid = 0;
  // glibc's posix_spawn reports exec failures as its return value (the child
  // shares memory until execve), so a missing program is an error here.
  const int err = posix_spawnp(&pid, argv[0], &setup.actions, &setup.attr, argv.data(), environ);
  if (err == 0) return pid;
  const std::string what = "cannot start " + request.argv[0] + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return api::Status::NotFound(what);
    case EACCES:
    case EPERM:
      return api::Status::PermissionDenied(what);
    case EAGAIN:
    case ENOMEM:
      return api::Status::Unavailable(what);
    default:
      return api::Status::Internal(what);
  }
}

std::optional<ExitStatus> PosixProcessLauncher::Reap(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  int status = 0;
  pid_t got;
  do {
    got = ::waitpid(pid, &status, WNOHANG);
  } while (got < 0 && errno == EINTR);
  if (got != pid) return std::nullopt;  // running (0) or not our child (ECHILD)
  if (WIFSIGNALED(status)) return ExitStatus{true, WTERMSIG(status)};
  return ExitStatus{false, WEXITSTATUS(status)};
}

}  // namespace vmlet::drivers
