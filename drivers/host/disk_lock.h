#pragma once

// "Another process holds this VM's disk image": the hypervisors' own image
// locking (QEMU's OFD locks on every image it opens read-write, Cloud
// Hypervisor's fcntl lock on each disk) refusing a boot. On shared storage
// that is the same VM still running on another host, a move between hosts
// under way: the old host has not stopped it yet. Not a crash: the
// reconciler shows it as status reason DiskLocked, retries the boot with
// backoff, and never counts it as a restart (docs/fleet.md).
//
// Drivers report it as a BootRefusal (kDiskLocked) in the two places a boot
// can fail: from Boot() when the VMM refused at once, from ExitState() when
// the VMM exited during its start-up because of the lock.

#include <optional>
#include <string>
#include <string_view>

namespace vmlet::drivers {

// The line of a VMM's own output (QEMU's stderr, Cloud Hypervisor's error
// body or log) that says an image lock was refused, or nothing. Recognised:
//   QEMU:  `-drive file=X,...: Failed to get "write" lock` (also "consistent
//          read" and shared locks), followed by `Is another process using
//          the image [X]?`
//   Cloud Hypervisor: a line naming a disk or an image that says "already
//          locked", "lock error", "Failed to lock" or "DiskLock" (its
//          wording differs between versions; Landlock lines never count).
// The detail names the image when the output does.
std::optional<std::string> FindDiskLockFailure(std::string_view vmm_output);

}  // namespace vmlet::drivers
