#pragma once

// Whether a VMM will be able to open a VM's images, checked before it is
// launched: a kernel it cannot read, or a disk it cannot write, fails every
// boot the same way, so it is shown as status reason ImageNotReadable and
// retried with backoff (until the operator fixes the file's permissions or
// the manifest), never as a crash loop (docs/reconcile.md).

#include <optional>
#include <string>
#include <string_view>

#include "api/status.h"
#include "api/vm_spec.h"
#include "drivers/boot_refusal.h"
#include "drivers/host/vmm_user.h"

namespace vmlet::drivers {

// 0 when `as` (vmlet itself when nothing) may open `path` with `mode`
// (R_OK, W_OK as for access(2)), else the errno the kernel gives.
int AccessErrno(const std::string& path, int mode, const std::optional<VmmCredentials>& as);

// Checks that `as` (vmlet itself when nothing) can read the kernel, the
// initramfs and the seed ISO, and read and write the root disk, the data
// disk and the EFI variable store, of `spec`, as the kernel would decide on
// open (mode bits, ACLs, every directory on the way): for another user, in a
// short-lived child process that takes that user's ids. A refusal
// (kImageNotReadable) naming the first file that fails, and why; nothing
// when all can be opened.
std::optional<BootRefusal> CheckImagesReadable(const api::VmSpec& spec,
                                               const std::optional<VmmCredentials>& as);

}  // namespace vmlet::drivers
