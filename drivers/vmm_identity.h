#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/vm_key.h"
#include "drivers/confirmed_vmm.h"
#include "drivers/proc_fs.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_handle.h"

namespace vmlet::drivers {

// Decides whether a recorded VMM is still the process vmlet launched
// (docs/reconcile.md, "Identity"), and holds a pidfd for each one it has confirmed.
//
// A record's VMM is confirmed when, all together: the host's boot id equals
// the recorded one; the pid exists and is not a zombie; its start time equals
// the recorded one; and its command line names the VM's directory (vm_dir).
// Otherwise the VMM is gone: either the pid is free, a zombie, or the host
// rebooted (kGone), or the pid now belongs to another process (kMismatch),
// which must never be signalled.
//
// "Names vm_dir": some argument contains vm_dir (without trailing '/') as a
// whole path: not preceded by a path character ([A-Za-z0-9._-/]) and followed
// by the end of the argument or by a character that cannot continue a VM name
// (not [A-Za-z0-9._-]): "unix:/s/vms/ns/a/qmp.sock,server=on" names /s/vms/ns/a
// but not /s/vms/ns/ab (nor /s/vms/ns/a.b, nor /vms/ns/a). An empty command
// line proves nothing: a process just forked into execve shows one for a
// moment (launchers wait until the VMM's command line shows before returning
// its handle); with the recorded start time it is kUnknown.
//
// When the ProcFs fails for a reason other than NotFound (an unreadable boot
// id or /proc entry, no pidfd to be had), nothing can be proven either way:
// the verdict is kUnknown, and the caller neither acts nor gives the VMM up,
// but asks again later.
//
// Thread-safe. Reads /proc without holding its mutex.
class VmmIdentity {
 public:
  enum class Verdict {
    kConfirmed,  // it is the VMM: act on it through Check::vmm
    kGone,       // it exited (pid free or zombie, or the host rebooted)
    kMismatch,   // the pid belongs to another process: never signal it
    kUnknown,    // not provable now (/proc unreadable, pidfd_open failed,
                 // command line not yet set): neither act nor give up; retry
  };

  struct Check {
    Verdict verdict;
    std::string reason;               // why not confirmed, for logs and events
    std::optional<ConfirmedVmm> vmm;  // set exactly when kConfirmed
  };

  // Called (on VmmIdentity's own thread) when a confirmed VMM's process
  // exits, as its pidfd reports.
  using ExitListener = std::function<void(const api::VmKey&)>;

  explicit VmmIdentity(const ProcFs& proc_fs);
  ~VmmIdentity();

  // Checks `handle` for VM `key`. On the first confirmation opens and keeps a
  // pidfd for the process; later checks use it (an exited process's pidfd is
  // readable: kGone) and re-verify everything through /proc. A confirmation
  // for another handle (the VM booted again) replaces the held pidfd. With a
  // ProcFs that has no real processes (invalid pidfds) every call re-checks
  // through /proc alone. Every kMismatch is counted.
  Check Confirm(const api::VmKey& key, const VmmHandle& handle);

  // Closes the pidfd held for `key`, if any. Called when the VM's VMM is gone
  // and cleaned up, or the VM is forgotten.
  void Forget(const api::VmKey& key);

  // Starts the thread that watches held pidfds (those held already and those
  // confirmed later) and calls `listener` once for each held pidfd whose
  // process exits, never under the mutex. Optional: without it, exits are
  // found by Confirm(). FailedPrecondition when started already; Unavailable
  // when the epoll fd or eventfd cannot be made.
  api::Status Start(ExitListener listener);
  // Stops and joins the thread; no listener call runs after it returns.
  // Idempotent; the destructor calls it.
  // REQUIRES: not called from the listener.
  void Stop();

  // How many checks found a pid that belongs to another process.
  uint64_t mismatches() const;

 private:
  struct Held;  // the handle a key was confirmed for, and the pidfd held for it

  // The /proc checks (boot id, pid, state, start time, command line) without
  // the pidfd. A kConfirmed result carries no vmm. Counts nothing.
  Check CheckProc(const VmmHandle& handle) const;
  // Opens a pidfd for a VMM CheckProc() has just confirmed and holds it for
  // `key`, replacing what was held for an older handle.
  Check Hold(const api::VmKey& key, const VmmHandle& handle);
  // Adds / removes a held pidfd to / from the watcher's epoll set.
  // REQUIRES: mu_ held.
  void WatchLocked(const api::VmKey& key, Held& held);
  void UnwatchLocked(Held& held);
  // The watcher thread's loop, until the eventfd is written.
  void Run(int epoll_fd, const ExitListener& listener);

  const ProcFs& proc_fs_;
  mutable std::mutex mu_;
  std::map<api::VmKey, std::unique_ptr<Held>> held_;  // guarded by mu_
  uint64_t mismatches_ = 0;                           // guarded by mu_
  // Watched pidfds by their epoll id (Held::watch_id); ids are never reused,
  // so an event for a pidfd forgotten meanwhile finds nothing.
  std::map<uint64_t, api::VmKey> watched_;  // guarded by mu_
  uint64_t next_watch_id_ = 1;              // guarded by mu_; 0 is the eventfd
  UniqueFd epoll_;      // guarded by mu_; valid from Start() to the end of Stop()
  UniqueFd wake_;       // guarded by mu_; eventfd that stops the thread
  std::thread thread_;  // guarded by mu_
};

// Whether some argument of `cmdline` names `vm_dir` as a whole path, by the
// rule in VmmIdentity's comment. Drivers use it to find their VMMs again.
bool CommandLineNamesVmDir(const std::vector<std::string>& cmdline, std::string_view vm_dir);

// Sends `signal` through a pidfd (pidfd_send_signal). NotFound when the
// process has exited and been reaped; a zombie (exited, not yet reaped by its
// parent) accepts the signal to no effect, so OK. FailedPrecondition when
// pidfd is -1 (a ConfirmedVmm of a ProcFs without real processes). Never
// reaches another process, whatever its pid.
api::Status SignalPidFd(int pidfd, int signal);

}  // namespace vmlet::drivers
