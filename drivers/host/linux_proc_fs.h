#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/status.h"
#include "drivers/proc_fs.h"

namespace vmlet::drivers {

// Parses the content of /proc/<pid>/stat. The command name (field 2) is in
// parentheses and may itself contain spaces and ')', so fields are counted
// from the last ')'. Fills pid, state and start_time_ticks.
api::StatusOr<ProcessInfo> ParseProcStat(std::string_view stat);

// The real /proc.
class LinuxProcFs final : public ProcFs {
 public:
  explicit LinuxProcFs(std::string proc_root = "/proc") : root_(std::move(proc_root)) {}

  api::StatusOr<std::string> BootId() const override;
  api::StatusOr<ProcessInfo> ReadProcess(pid_t pid) const override;
  api::StatusOr<UniqueFd> OpenPidFd(pid_t pid) const override;
  api::StatusOr<std::vector<pid_t>> ListPids() const override;

 private:
  std::string root_;
};

}  // namespace vmlet::drivers
