#pragma once

// "Another process holds this VM's disk image": the hypervisors' own image
// locking (QEMU's OFD locks on every image it opens read-write, Cloud
// Hypervisor's fcntl lock on each disk) refusing a boot. On shared storage
// that is the same VM still running on another host, the move of issue 7
// under way: the old host has not stopped it yet. Not a crash: the
// reconciler shows it as status reason DiskLocked, retries the boot with
// backoff, and never counts it as a restart (docs/fleet.md).
//
// Drivers report it in the two places a boot can fail:
//  - Boot() returns DiskLockedError(detail) when the VMM refused at once;
//  - ExitState() returns DiskLockedState(detail) when the VMM exited during
//    its start-up because of the lock.

#include <optional>
#include <string>
#include <string_view>

#include "api/status.h"
#include "api/vm_state.h"

namespace vmlet::drivers {

// The status reason, as status.json, events and docs spell it.
inline constexpr std::string_view kDiskLocked = "DiskLocked";

// Unavailable("DiskLocked: " + detail): retryable.
api::Status DiskLockedError(const std::string& detail);
// Failed("DiskLocked: " + detail).
api::VmState DiskLockedState(const std::string& detail);

bool IsDiskLocked(const api::Status& status);
bool IsDiskLocked(const api::VmState& state);
// What follows "DiskLocked: " (the whole message when it is not one).
std::string_view DiskLockedDetail(std::string_view message);

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
