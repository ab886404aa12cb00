#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/vm_spec.h"
#include "drivers/host/fd_waiter.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/vmm_user.h"
#include "drivers/proc_fs.h"

namespace vmlet::drivers {

// One virtiofsd serving one shared dir of a VM.
struct Sidecar {
  std::string tag;
  pid_t pid = 0;
  uint64_t start_time_ticks = 0;
  std::string socket;  // <vm_dir>/virtiofs-<tag>.sock

  friend bool operator==(const Sidecar&, const Sidecar&) = default;
};

// The virtiofsd processes that serve a VM's sharedDirs over virtio-fs (one
// per dir), started before the VMM and tracked like it: each is recorded in
// <vm_dir>/sidecars.json (pid, start time; replaced atomically) and signalled
// only after /proc confirms it is still that process (same start time, not a
// zombie, a command line naming its socket under vm_dir). A pid now owned by
// another process is never signalled.
//
// A read-write dir runs `virtiofsd --socket-path=SOCK -o source=DIR
// -o cache=auto`. A readOnly dir is enforced on the host: virtiofsd starts in
// a mount namespace of its own where DIR is bind-mounted read-only on itself,
// and is confined to it with `-o sandbox=chroot` (its default sandbox would
// bind-mount DIR again, writable):
//   unshare --mount --propagation private -- /bin/sh -c
//     'mount --bind -o ro -- "$1" "$1" && exec "$0" --socket-path="$2" -o source="$1"
//      -o sandbox=chroot -o cache=auto' VIRTIOFSD DIR SOCK
// virtiofsd needs root (or CAP_SYS_ADMIN) for its sandbox. It exits by itself
// when the VMM closes its end; StopAll() ends any that remain.
//
// Thread-safe for different VM directories.
class VirtiofsdSidecars {
 public:
  struct Options {
    std::string virtiofsd_binary = "/usr/lib/qemu/virtiofsd";
    std::string unshare_binary = "unshare";
    std::chrono::milliseconds stop_timeout{2000};  // SIGTERM, then SIGKILL
    // vmlet run --vmm-user: virtiofsd runs as the VMM user too, in a user
    // namespace of its own where that user is root, so that its chroot
    // sandbox (and a readOnly dir's read-only bind mount) still work; it
    // can reach only what the user may, and files it creates are the
    // user's. Its pid file directory (/var/run/virtiofsd, root's) is
    // replaced there by <vm_dir>/virtiofsd-run:
    //   setpriv ... --clear-groups ... -- unshare --user --map-root-user --mount --propagation
    //     private -- /bin/sh -c 'mount --bind "$3" /var/run/virtiofsd &&
    //     [mount --bind -o ro -- "$1" "$1" &&] exec "$0" --socket-path="$2"
    //     -o source="$1" -o sandbox=chroot -o cache=auto' VIRTIOFSD DIR SOCK RUNDIR
    // Its socket, the user's, is made 0600. Nothing: virtiofsd runs as root.
    std::optional<VmmCredentials> run_as = std::nullopt;
    std::string setpriv_binary = "setpriv";
  };

  VirtiofsdSidecars(const api::Clock& clock, const ProcFs& proc_fs, ProcessLauncher& launcher,
                    Options options);

  static std::string SocketPath(const std::string& vm_dir, const std::string& tag);
  static std::string RecordPath(const std::string& vm_dir);

  // Ends what an earlier boot left (StopAll), then starts one virtiofsd per
  // dir, each with its output appended to <vm_dir>/virtiofsd-<tag>.log,
  // waits until each has created its socket, and records them. Nothing for
  // no dirs. On any failure every sidecar started here is stopped again and
  // the error names the dir and virtiofsd's last words: Unavailable when one
  // exited or did not come up by `deadline`; what Spawn says otherwise.
  [[nodiscard]] api::StatusOr<std::vector<Sidecar>> Start(const std::vector<api::SharedDir>& dirs,
                                                          const std::string& vm_dir,
                                                          api::Clock::MonotonicTime deadline);

  // Stops every sidecar recorded for vm_dir whose identity /proc confirms
  // (SIGTERM through a pidfd, SIGKILL after stop_timeout), reaps those this
  // process launched, removes their sockets and the record. OK when there is
  // nothing to stop. Idempotent.
  [[nodiscard]] api::Status StopAll(const std::string& vm_dir);

  // The sidecars recorded for vm_dir that are alive and confirmed.
  std::vector<Sidecar> Running(const std::string& vm_dir) const;

 private:
  std::vector<Sidecar> Load(const std::string& vm_dir) const;
  api::Status Save(const std::string& vm_dir, const std::vector<Sidecar>& sidecars) const;
  bool Confirmed(const Sidecar& sidecar) const;
  void Stop(const Sidecar& sidecar);
  // The argv that starts virtiofsd for `dir` on `socket` (for run_as, in a
  // user namespace of its own, with its run directory under vm_dir made).
  api::StatusOr<std::vector<std::string>> CommandLine(const api::SharedDir& dir,
                                                      const std::string& vm_dir,
                                                      const std::string& socket) const;

  const api::Clock& clock_;
  const FdWaiter waiter_;  // for the sidecars' pidfds
  const ProcFs& proc_fs_;
  ProcessLauncher& launcher_;
  const Options options_;
};

}  // namespace vmlet::drivers
