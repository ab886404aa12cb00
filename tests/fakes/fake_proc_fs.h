#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "api/status.h"
#include "drivers/proc_fs.h"
#include "drivers/unique_fd.h"

namespace vmlet::testing {

// A process table in memory, with the behaviour of the real one that identity
// checks depend on: processes exit (and vanish, or stay as zombies until
// reaped), pids are reused by newer processes with other start times, and a
// reboot changes the boot id.
//
// OpenPidFd() returns an invalid UniqueFd for a live process (there is no
// real process to hold), so VmmIdentity re-checks every Confirm() through
// this table alone, and a ConfirmedVmm from it has pidfd() == -1.
//
// Thread-safe.
class FakeProcFs final : public drivers::ProcFs {
 public:
  static constexpr const char* kDefaultBootId = "6d1f7e0a-2b4c-4e7d-9a51-0c3f8b2e4d10";

  explicit FakeProcFs(std::string boot_id = kDefaultBootId) : boot_id_(std::move(boot_id)) {}

  // A process starts with `pid`: running ('S'), this start time and command
  // line. Replaces whatever had the pid (as ReusePid()).
  void AddProcess(pid_t pid, uint64_t start_ticks, std::vector<std::string> cmdline) {
    std::lock_guard lock(mu_);
    processes_[pid] = drivers::ProcessInfo{pid, 'S', start_ticks, std::move(cmdline)};
  }

  // The process exits and is reaped: the pid is free. No-op when free.
  void Exit(pid_t pid) {
    std::lock_guard lock(mu_);
    processes_.erase(pid);
  }

  // The process exits but is not reaped: state 'Z', empty command line, same
  // pid and start time. No-op when the pid is free.
  void MakeZombie(pid_t pid) {
    std::lock_guard lock(mu_);
    auto it = processes_.find(pid);
    if (it == processes_.end()) return;
    it->second.state = 'Z';
    it->second.cmdline.clear();
  }

  // The process with `pid` (if any) is gone and a new one got its pid.
  void ReusePid(pid_t pid, uint64_t new_start_ticks, std::vector<std::string> new_cmdline) {
    AddProcess(pid, new_start_ticks, std::move(new_cmdline));
  }

  // The host "rebooted". Processes are left as they are, so a test can show
  // that a pid and start time that happen to match after a reboot do not
  // confirm anything.
  void SetBootId(std::string boot_id) {
    std::lock_guard lock(mu_);
    boot_id_ = std::move(boot_id);
  }

  // While set, BootId() and ReadProcess() fail with `status` (an unreadable
  // /proc). REQUIRES: `status` is not OK.
  void SetReadError(std::optional<api::Status> status) {
    std::lock_guard lock(mu_);
    read_error_ = std::move(status);
  }

  bool Exists(pid_t pid) const {
    std::lock_guard lock(mu_);
    return processes_.count(pid) != 0;
  }

  // How many times each call was made.
  int boot_id_reads() const {
    std::lock_guard lock(mu_);
    return boot_id_reads_;
  }
  int process_reads() const {
    std::lock_guard lock(mu_);
    return process_reads_;
  }
  int pidfd_opens() const {
    std::lock_guard lock(mu_);
    return pidfd_opens_;
  }

  api::StatusOr<std::string> BootId() const override {
    std::lock_guard lock(mu_);
    ++boot_id_reads_;
    if (read_error_) return *read_error_;
    return boot_id_;
  }

  api::StatusOr<drivers::ProcessInfo> ReadProcess(pid_t pid) const override {
    std::lock_guard lock(mu_);
    ++process_reads_;
    if (read_error_) return *read_error_;
    auto it = processes_.find(pid);
    if (it == processes_.end()) {
      return api::Status::NotFound("no process " + std::to_string(pid));
    }
    return it->second;
  }

  api::StatusOr<drivers::UniqueFd> OpenPidFd(pid_t pid) const override {
    std::lock_guard lock(mu_);
    ++pidfd_opens_;
    if (processes_.count(pid) == 0) {
      return api::Status::NotFound("no process " + std::to_string(pid));
    }
    return drivers::UniqueFd();
  }

 private:
  mutable std::mutex mu_;
  std::string boot_id_;                              // guarded by mu_
  std::map<pid_t, drivers::ProcessInfo> processes_;  // guarded by mu_
  std::optional<api::Status> read_error_;            // guarded by mu_
  mutable int boot_id_reads_ = 0;                    // guarded by mu_
  mutable int process_reads_ = 0;                    // guarded by mu_
  mutable int pidfd_opens_ = 0;                      // guarded by mu_
};

}  // namespace vmlet::testing
