#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "api/status.h"
#include "drivers/unique_fd.h"

namespace vmlet::drivers {

// One process as /proc shows it.
struct ProcessInfo {
  pid_t pid = 0;
  char state = '?';                  // field 3 of /proc/<pid>/stat: 'R', 'S', 'Z' (zombie), ...
  uint64_t start_time_ticks = 0;     // field 22: clock ticks after host boot
  std::vector<std::string> cmdline;  // /proc/<pid>/cmdline split at NULs (empty for zombies)
};

// The host's process table, as a seam (leveldb's Env for processes). The
// identity checks read only through it, so tests use a fake with real
// behaviour (processes that exit, pids that get reused) and the fake driver
// shows its simulated VMMs through one.
//
// Thread-safe.
class ProcFs {
 public:
  virtual ~ProcFs() = default;

  // The host's boot id (/proc/sys/kernel/random/boot_id, without newline).
  virtual api::StatusOr<std::string> BootId() const = 0;

  // The process with this pid. NotFound when there is none. A zombie is
  // returned, with state 'Z': it has exited, and callers must treat it so.
  virtual api::StatusOr<ProcessInfo> ReadProcess(pid_t pid) const = 0;

  // A pidfd (pidfd_open) for the process, to hold so that the pid cannot be
  // reused under us and to learn of its exit. NotFound when it is gone. An
  // implementation without real processes returns an invalid UniqueFd.
  virtual api::StatusOr<UniqueFd> OpenPidFd(pid_t pid) const = 0;

  // Every pid in the table, in no particular order (a process may exit
  // before the caller reads it: ReadProcess then says NotFound). Used to find
  // VMMs that vmlet has no record of. The default: FailedPrecondition (a table that cannot
  // be listed).
  virtual api::StatusOr<std::vector<pid_t>> ListPids() const {
    return api::Status::FailedPrecondition("this process table cannot be listed");
  }
};

}  // namespace vmlet::drivers
