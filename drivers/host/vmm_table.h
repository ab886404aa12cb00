#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "drivers/host/process_launcher.h"
#include "drivers/vmm_handle.h"

namespace vmlet::drivers {

// What a driver keeps about one VMM process while it lives; drivers derive
// their per-VM state from it.
struct VmmProcess {
  pid_t pid = 0;
  uint64_t start_time_ticks = 0;
  bool child = false;  // launched by this vmlet: Reap() may collect it
  std::optional<ExitStatus> exit;
  bool watched = false;  // serial.log is under the ready-marker watcher
};

// A driver's VMMs by VM directory: one entry per VM, for the process its
// handle names. `Vm` derives from VmmProcess.
//
// Thread-safe for the map; an entry itself is used only by the worker that
// holds its VM's key (the work queue never gives one key to two workers).
template <typename Vm>
class VmmTable {
 public:
  using Factory = std::function<std::unique_ptr<Vm>(const VmmHandle& handle)>;

  // The entry for `handle`'s process: made by `make` (then given the
  // handle's pid and start time) on first use, and again when the handle
  // names another process than the entry.
  Vm& For(const VmmHandle& handle, const Factory& make) {
    std::lock_guard lock(mu_);
    std::unique_ptr<Vm>& slot = vms_[handle.vm_dir];
    if (!slot || slot->pid != handle.process.pid ||
        slot->start_time_ticks != handle.process.start_time_ticks) {
      slot = make(handle);
      slot->pid = handle.process.pid;
      slot->start_time_ticks = handle.process.start_time_ticks;
    }
    return *slot;
  }

  // Makes `vm` the entry of `vm_dir`, replacing what was there.
  Vm& Put(const std::string& vm_dir, std::unique_ptr<Vm> vm) {
    std::lock_guard lock(mu_);
    std::unique_ptr<Vm>& slot = vms_[vm_dir];
    slot = std::move(vm);
    return *slot;
  }

  // Removes and returns the entry of `handle`'s VM when it is for the
  // handle's pid; nullptr otherwise.
  std::unique_ptr<Vm> Take(const VmmHandle& handle) {
    std::lock_guard lock(mu_);
    auto it = vms_.find(handle.vm_dir);
    if (it == vms_.end() || it->second->pid != handle.process.pid) return nullptr;
    std::unique_ptr<Vm> vm = std::move(it->second);
    vms_.erase(it);
    return vm;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Vm>> vms_;  // by vm_dir; guarded by mu_
};

}  // namespace vmlet::drivers
