#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "api/status.h"

namespace vmlet::drivers {

// What to launch.
struct SpawnRequest {
  // argv[0] is a path, or a name looked up on PATH. Must not be empty.
  std::vector<std::string> argv;
  // stdout and stderr are appended to this file (created 0640 when missing);
  // empty: /dev/null. stdin is always /dev/null.
  std::string output_path;
  // Start a new session (setsid), so the process outlives vmlet, is not in
  // its process group, and gets no SIGHUP or terminal signals meant for it.
  bool new_session = true;
};

// How a child process ended (waitpid).
struct ExitStatus {
  bool signaled = false;  // killed by a signal (then `code` is the signal number)
  int code = 0;           // the exit status, or the signal number

  // "exited with status 1", "killed by signal 9 (SIGKILL)".
  std::string Describe() const;

  friend bool operator==(const ExitStatus&, const ExitStatus&) = default;
};

// Starts and reaps child processes: the seam between drivers and the
// kernel's process calls (ninja's SubprocessSet).
//
// Thread-safe.
class ProcessLauncher {
 public:
  virtual ~ProcessLauncher() = default;

  // Starts `request.argv` and returns its pid once the program has been
  // executed (a program that cannot be found or executed is an error, not a
  // child that exits 127). The child starts with an empty signal mask and
  // default signal dispositions, whatever the caller's threads block, and
  // with no file descriptor of the caller but 0, 1 and 2.
  // Errors: NotFound (no such program), PermissionDenied (not executable),
  // Unavailable (out of processes or memory; retryable), Internal.
  [[nodiscard]] virtual api::StatusOr<pid_t> Spawn(const SpawnRequest& request) = 0;

  // Reaps the child `pid` if it has exited, returning how it ended; nothing
  // while it runs, or when `pid` is not an unreaped child of this process
  // (never launched by it, or reaped already). Never blocks.
  // REQUIRES: `pid` came from Spawn() and has not been reaped yet: once
  // reaped, its number may be given to another child.
  virtual std::optional<ExitStatus> Reap(pid_t pid) = 0;
};

// The real one: posix_spawn(3) (POSIX_SPAWN_SETSID, SETSIGMASK, SETSIGDEF,
// closefrom), waitpid(2) with WNOHANG.
class PosixProcessLauncher final : public ProcessLauncher {
 public:
  api::StatusOr<pid_t> Spawn(const SpawnRequest& request) override;
  std::optional<ExitStatus> Reap(pid_t pid) override;
};

}  // namespace vmlet::drivers
