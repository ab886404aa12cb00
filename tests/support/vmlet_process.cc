#include "tests/support/vmlet_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tests/support/files.h"

extern char** environ;

namespace vmlet::testing {

VmletProcess::~VmletProcess() { KillAndReap(); }

std::string VmletProcess::Start(const std::string& binary, const std::vector<std::string>& args,
                                const std::string& log_path) {
  if (running()) return "already running (pid " + std::to_string(pid_) + ")";
  std::vector<std::string> argv_storage;
  argv_storage.push_back(binary);
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_storage) argv.push_back(arg.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);

  // The test runner's mask and handlers must not leak into vmlet: it relies
  // on SIGTERM being deliverable and on its own sigwait.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, s);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, binary.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return "posix_spawn " + binary + ": " + std::strerror(rc);
  pid_ = pid;
  return "";
}

void VmletProcess::Signal(int signal) {
  if (running()) ::kill(pid_, signal);
}

std::optional<int> VmletProcess::WaitForExit(std::chrono::milliseconds timeout) {
  if (!running()) return std::nullopt;
  // Our unreaped child: its pid cannot be reused, so the pidfd is for it.
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int ready;
    do {
      ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (ready < 0 && errno == EINTR);  // a rare EINTR only extends the wait
    ::close(pidfd);
    if (ready == 0) return std::nullopt;
  }
  int status = 0;
  pid_t reaped;
  do {
    reaped = ::waitpid(pid_, &status, 0);
  } while (reaped < 0 && errno == EINTR);
  pid_ = -1;
  return status;
}

void VmletProcess::KillAndReap() {
  if (!running()) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

CommandResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& log_path, std::chrono::milliseconds timeout) {
  const size_t logged_before = ReadFile(log_path).size();
  VmletProcess process;  // its destructor kills it if it outlives `timeout`
  CommandResult result;
  if (std::string error = process.Start(binary, args, log_path); !error.empty()) {
    result.output = error;
    return result;
  }
  std::optional<int> status = process.WaitForExit(timeout);
  if (status && WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
  result.output = ReadFile(log_path).substr(logged_before);
  return result;
}

std::optional<std::vector<std::string>> CommandOutputLines(const std::string& shell_command) {
  FILE* pipe = ::popen(shell_command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::vector<std::string> lines;
  char buf[4096];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    std::string line(buf);
    while (!line.empty() && line.back() == '\n') line.pop_back();
    lines.push_back(line);
  }
  if (::pclose(pipe) != 0) return std::nullopt;
  return lines;
}

}  // namespace vmlet::testing
