#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>

#include "api/clock.h"
#include "api/status.h"
#include "drivers/unique_fd.h"

namespace vmlet::drivers {

// Finds the readiness marker a guest prints on its serial console
// (docs/reconcile.md): the line `VMRS_READY <ip>`, which the VMM writes to
// `<vm_dir>/serial.log`. Watches the serial logs of many VMs, keyed by their
// vm_dir, with one inotify fd and one thread, and reads each file only from
// where it stopped last time (a per-file offset).
//
// Only a complete line counts: one ended by '\n' (the '\r' of a CRLF is
// trailing whitespace). It is a marker when, somewhere in it, the word
// `VMRS_READY` (at the start of the line or after whitespace) is followed by
// one or more spaces or tabs, then exactly one token, then only whitespace:
// see ParseMarkerLine(). The first valid marker after Watch() wins: its IP
// and the clock's MonotonicNow() when the watcher read it are kept, and later
// lines are not scanned (their bytes are skipped, not read). A line longer than
// kMaxLineBytes (without its '\n') is dropped through its newline and never
// matches, so a file costs at most kMaxLineBytes of memory however long its
// lines; files are read kReadChunkBytes at a time.
//
// A file found shorter than its offset was truncated (a VMM re-opened it
// with O_TRUNC): it is read again from offset 0, and the partial line and the
// marker seen are forgotten. A truncation that the file grows back past the
// offset before the watcher looks cannot be seen; vmlet rotates serial.log
// before each boot and calls Watch() again, so this is only a safety net.
//
// A file replaced or removed (renamed away, unlinked, the path now naming
// another file, or inotify dropping its watch) is no longer read: its state
// (the marker seen, if any) is kept and its inotify watch dropped, until
// Watch() or Unwatch() for its VM. Read errors other than those leave the
// state as it was; the next event or Poll() reads again.
//
// Thread-safety: every method may be called from any thread, concurrently
// with the watcher's thread. Files are read without the mutex held (a
// per-file flag makes concurrent readers of one file take turns); only
// inotify_add_watch / inotify_rm_watch and eventfd writes run under it, so
// that the watch maps always match the kernel's.
class ReadyMarkerWatcher {
 public:
  struct Ready {
    std::string ip;                     // as the guest printed it
    api::Clock::MonotonicTime seen_at;  // when the watcher read the marker line
    friend bool operator==(const Ready&, const Ready&) = default;
  };
  // Called with the vm_dir passed to Watch().
  using Listener = std::function<void(const std::string& vm_dir)>;

  static constexpr std::string_view kMarker = "VMRS_READY";
  // The longest line kept (without its '\n'); longer ones are dropped.
  static constexpr size_t kMaxLineBytes = 4096;
  // The most bytes one read() asks for.
  static constexpr size_t kReadChunkBytes = size_t{64} * 1024;
  // How long the thread lets a file's writes gather after inotify reports
  // one, before it reads: bounds its wakeups under a byte-at-a-time writer.
  static constexpr std::chrono::milliseconds kCoalesce{5};

  // Starts no thread and opens nothing. `clock` must outlive the watcher.
  explicit ReadyMarkerWatcher(const api::Clock& clock);
  ~ReadyMarkerWatcher();  // Stop()s

  ReadyMarkerWatcher(const ReadyMarkerWatcher&) = delete;
  ReadyMarkerWatcher& operator=(const ReadyMarkerWatcher&) = delete;

  // Creates the inotify fd and an eventfd, adds inotify watches for the files
  // watched already, and starts the thread that reads watched files as
  // inotify reports changes to them. The thread calls `listener(vm_dir)`,
  // never under the mutex, once per VM whose marker has been seen since its
  // Watch() (or since the truncation that last cleared it), whichever read
  // saw it (the thread's, Watch()'s or Poll()'s): a marker seen before
  // Start() is reported once the thread runs. A call already under way when
  // Unwatch() returns may still arrive. OK when started; FailedPrecondition
  // when running already (calling nothing); Unavailable when the fds cannot be
  // made. Start() after Stop() starts again.
  // REQUIRES: `listener` does not throw and does not call Stop(); it may call
  // Poll(), Watch() and Unwatch().
  api::Status Start(Listener listener);

  // Stops and joins the thread and closes the fds; no listener call runs after
  // it returns. State and Poll() stay as they were. Idempotent; does nothing
  // when not started.
  // REQUIRES: not called from the listener.
  void Stop();

  // Starts watching `serial_log` for the VM `vm_dir` from offset 0, or starts
  // again, dropping all that was known for vm_dir. Reads what the file holds
  // already before returning, so Poll() right after it tells whether the guest
  // was ready (a restarted vmlet knows at once). Without Start() there are no
  // notifications; Poll() reads. Failures leave vm_dir not watched (a previous
  // watch of it is gone too):
  //  - NotFound when `serial_log` does not exist;
  //  - PermissionDenied when it cannot be opened for reading;
  //  - InvalidArgument when it is not a regular file, or, when started, when
  //    it is the file (inode) another VM's watch holds;
  //  - Unavailable when inotify cannot watch it (the watch limit);
  //  - Internal for any other error of open/fstat/inotify_add_watch.
  api::Status Watch(const std::string& vm_dir, const std::string& serial_log);

  // Drops the inotify watch and all state for `vm_dir`. Idempotent.
  void Unwatch(const std::string& vm_dir);

  // Reads whatever `vm_dir`'s file holds that was not read yet (synchronously,
  // so the answer never depends on the thread's timing; a read of the file
  // under way on another thread is waited for), then returns the first valid
  // marker seen since Watch(), if any. Nothing when vm_dir is not watched.
  std::optional<Ready> Poll(const std::string& vm_dir);

  // The IP of one complete line (without its '\n'), or nothing when the line
  // is no valid marker. Valid: `VMRS_READY` as a whole word (at the start or
  // after whitespace; other text may come before it), one or more spaces or
  // tabs, one token that inet_pton() accepts as IPv4 or IPv6 (so no zone, no
  // brackets, no port, no truncated address), then only whitespace (space,
  // '\t', '\r', '\v', '\f'). The token is returned as printed.
  static std::optional<std::string> ParseMarkerLine(std::string_view line);

 private:
  struct File;  // one watched VM's file and what was read of it

  // Reads the new bytes of vm_dir's file and records what they say. Takes
  // mu_ only around the bookkeeping; waits while another thread reads the
  // same file.
  void CatchUp(const std::string& vm_dir);
  // Adds the inotify watch for `file` / drops it (keeping the state).
  // REQUIRES: mu_ held; inotify_ valid (Add).
  api::Status AddWatchLocked(const std::string& vm_dir, File& file);
  void DropWatchLocked(File& file, bool kernel_dropped_it);
  // Wakes the thread (to deliver a notification or to stop).
  // REQUIRES: mu_ held.
  void WakeLocked();
  // The thread's loop, until Stop().
  void Run(int inotify_fd, int wake_fd, const Listener& listener);

  const api::Clock& clock_;

  std::mutex mu_;
  std::condition_variable read_done_;  // notified when a read of a File ends
  // Watched VMs by vm_dir. A File is replaced (never reused) by Watch(), so
  // a read that finds its File no longer here drops what it read.
  std::map<std::string, std::shared_ptr<File>> files_;  // guarded by mu_
  std::map<int, std::string> by_wd_;                    // guarded by mu_; inotify wd -> vm_dir
  // VMs whose marker was seen and not yet given to the listener.
  std::set<std::string> pending_;  // guarded by mu_
  UniqueFd inotify_;               // guarded by mu_; valid from Start() to the end of Stop()
  UniqueFd wake_;                  // guarded by mu_; eventfd that wakes the thread
  bool stopping_ = false;          // guarded by mu_
  std::thread thread_;             // guarded by mu_
};

}  // namespace vmlet::drivers
