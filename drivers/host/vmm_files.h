#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "drivers/host/vmm_user.h"

namespace vmlet::drivers {

// The files every VMM vmlet launches keeps in its VM directory, whatever the
// hypervisor: serial.log (the guest's console, which carries the ready
// marker) and vmm.log (the VMM's own stdout and stderr). Each boot starts
// fresh ones; the previous boot's stay as *.1 for a post-mortem.
class VmmFiles {
 public:
  explicit VmmFiles(std::string vm_dir) : vm_dir_(std::move(vm_dir)) {}

  const std::string& vm_dir() const { return vm_dir_; }
  std::string serial_log() const { return vm_dir_ + "/serial.log"; }
  std::string vmm_log() const { return vm_dir_ + "/vmm.log"; }

  // Before a boot: moves serial.log, vmm.log and each of `more` to *.1
  // (replacing older ones), then creates an empty serial.log, given to
  // `owner` when set (the VMM user must be able to open it). The VMM opens
  // serial.log with O_TRUNC, which keeps the inode, so a watcher can follow
  // it from now on. Internal when a file cannot be moved, made or given.
  [[nodiscard]] api::Status PrepareForBoot(const std::vector<std::string>& more,
                                           const std::optional<VmmCredentials>& owner) const;

  // The last 64 KiB of serial.log / vmm.log, or "" when it cannot be read.
  std::string SerialTail() const;
  std::string VmmLogTail() const;

 private:
  std::string vm_dir_;
};

// The last 64 KiB of the file at `path`, or "" when it cannot be read.
std::string FileTail(const std::string& path);
// The last non-empty line of `text`, without '\r'.
std::string LastLine(std::string_view text);
// The last line of `text` holding `needle`, without '\r'; "" when none.
std::string LineWith(std::string_view text, std::string_view needle);
// Removes `path`; OK when it is not there. Internal otherwise.
[[nodiscard]] api::Status RemoveFile(const std::string& path);

}  // namespace vmlet::drivers
