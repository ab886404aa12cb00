#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace vmlet::testing {

// One process (`vmlet`, or any other) that a test started: spawned with posix_spawn (a clean
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

  // Starts `binary` (looked up on PATH when it has no slash) with `args`
  // (argv[1..]). Returns an empty string on success, else why it could not
  // start. REQUIRES: not running.
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

// How a command run to its end ended, and what it printed.
struct CommandResult {
  int exit_code = -1;  // -1: it did not exit in time, or a signal ended it
  std::string output;  // its stdout and stderr, or why it could not start
};

// Runs `binary` (as VmletProcess::Start does) with its output appended to
// `log_path`, and waits up to `timeout` for it to exit; SIGKILLs it after
// that. The result's output is what it appended.
CommandResult RunToExit(const std::string& binary, const std::vector<std::string>& args,
                        const std::string& log_path, std::chrono::milliseconds timeout);

// The lines `shell_command` (run by /bin/sh, its stderr left as it is)
// printed on stdout, without their newlines; none when it exited non-zero or
// could not run.
std::optional<std::vector<std::string>> CommandOutputLines(const std::string& shell_command);

}  // namespace vmlet::testing
