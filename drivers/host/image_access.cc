#include "drivers/host/image_access.h"

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vmlet::drivers {
namespace {

struct Image {
  const char* field;
  std::optional<std::string> path;
  int mode;  // R_OK or R_OK | W_OK
};

// access(2) as `as`: in a child that takes its ids (setgroups, setresgid,
// setresuid; only async-signal-safe calls after fork), so the answer is the
// kernel's own. The errno of the failure, 0 when allowed.
int AccessAs(const std::string& path, int mode, const VmmCredentials& as) {
  const pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    if (::setgroups(as.groups.size(), as.groups.data()) != 0 ||
        ::setresgid(as.gid, as.gid, as.gid) != 0 || ::setresuid(as.uid, as.uid, as.uid) != 0) {
      ::_exit(255);
    }
    // The effective ids are the user's now: access() checks the real ones,
    // which are too.
    const int rc = ::access(path.c_str(), mode);
    ::_exit(rc == 0 ? 0 : (errno > 0 && errno < 255 ? errno : 254));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return errno;
  }
  if (!WIFEXITED(status)) return EIO;
  const int code = WEXITSTATUS(status);
  return code == 255 ? EPERM : code;
}

}  // namespace

int AccessErrno(const std::string& path, int mode, const std::optional<VmmCredentials>& as) {
  if (as) return AccessAs(path, mode, *as);
  return ::access(path.c_str(), mode) == 0 ? 0 : errno;
}

std::optional<BootRefusal> CheckImagesReadable(const api::VmSpec& spec,
                                               const std::optional<VmmCredentials>& as) {
  const Image images[] = {
      {"kernel", spec.kernel, R_OK},
      {"initramfs", spec.initramfs, R_OK},
      {"seedIso", spec.seed_iso, R_OK},
      {"rootDisk", spec.root_disk, R_OK | W_OK},
      {"dataDisk", spec.data_disk, R_OK | W_OK},
      {"efiVariableStore", spec.efi_variable_store, R_OK | W_OK},
  };
  for (const Image& image : images) {
    if (!image.path) continue;
    const std::string& path = *image.path;
    const int error = AccessErrno(path, image.mode, as);
    if (error == 0) continue;
    const std::string who = as ? "user " + as->user : "vmlet";
    const std::string need = image.mode & W_OK ? "read and write" : "read";
    return BootRefusal{BootRefusal::Reason::kImageNotReadable,
                       std::string("spec.") + image.field + " " + path + ": " + who + " cannot " +
                           need + " it (" + std::strerror(error) + ")"};
  }
  return std::nullopt;
}

}  // namespace vmlet::drivers
