#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace vmlet::testing {

// One `vmlet` process that a test started: spawned with posix_spawn (a clean
// signal mask and default dispositions, stdin from /dev/null, stdout and
// stderr appended to a log file), and known only by the pid recorded at
// spawn. Every signal goes to that pid; nothing is ever looked up by name.
// The destructor SIGKILLs and reaps the process if it is still running.
//
// Not thread-safe; one test thread owns it.
class VmletProcess {
 public:
  VmletProcess() = default;
  ~VmletProcess();
  VmletProcess(const VmletProcess&) = delete;
  VmletProcess& operator=(const VmletProcess&) = delete;

  // Starts `binary` with `args` (argv[1..]). Returns an empty string on
  // success, else why it could not start. REQUIRES: not running.
  std::string Start(const std::string& binary, const std::vector<std::string>& args,
                    const std::string& log_path);

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Sends `signal` to the recorded pid. REQUIRES: running().
  void Signal(int signal);

  // Waits up to `timeout` for the process to exit, through a pidfd (no
  // polling loop), then reaps it. Returns its wait status (as waitpid gives
  // it), or none when it is still running at the deadline.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);

  // SIGKILL and reap, if running. Idempotent.
  void KillAndReap();

 private:
  pid_t pid_ = -1;
};

// The last `lines` lines of a text file ("" when it cannot be read), for
// diagnostics.
std::string TailOfFile(const std::string& path, size_t lines);

}  // namespace vmlet::testing
