#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "api/status.h"
#include "manifests/directory_source.h"

namespace vmlet::manifests {

// Keeps a ManifestDirectory current: rescans it when inotify reports a change
// under its root, and every `rescan_interval` as a safety net, and hands every
// update that says something new to a listener.
//
// Watched with inotify, and re-synced after every scan:
//  - the root and every directory under it the way ListManifestFiles walks
//    them (names starting with '.' skipped, symlinks followed);
//  - the directory holding the resolved target of every symlinked manifest
//    file, so an in-place edit of a ConfigMap volume's
//    `..2026_11_28_.../vm.yaml` (reached through `vm.yaml -> ..data/vm.yaml`)
//    is seen;
//  - the root's parent, for events on the root's own name: a root that is a
//    symlink swapped by git-sync, or that is created, removed or renamed.
// Any event in a watched directory (created, deleted, moved, attributes
// changed, or a file closed after writing) triggers a rescan, whatever the
// name: `..data` renamed over counts. Writes themselves do not, so a file is
// not read half-written while its writer still has it open. A burst of events
// is coalesced: the rescan waits until `settle` passed without an event, but
// no longer than 10 x `settle` in all. An inotify queue overflow also triggers
// a rescan. Anything inotify misses (a directory over the watch limit, a
// symlink changed outside the watched directories) is caught by the periodic
// rescan, or by RequestRescan().
//
// The listener gets the update of the first scan, and afterwards only updates
// whose diff is not empty, or whose errors, invalid VMs or source status
// differ from the last update it got.
//
// Thread-safety: Start(), Stop() and RequestRescan() may be called from any
// thread. The listener runs on the thread calling Start() for the first scan,
// then on the watcher's own thread; it is never called concurrently with
// itself, must not throw, and must not call Stop().
class DirectoryWatcher {
 public:
  struct Options {
    // A full rescan this long after the last one, whatever inotify says.
    // Zero disables the periodic rescan.
    std::chrono::milliseconds rescan_interval = std::chrono::seconds(30);
    // The quiet time, after an event, before a rescan.
    std::chrono::milliseconds settle = std::chrono::milliseconds(20);
  };
  using Listener = std::function<void(const SourceUpdate&)>;

  // Neither scans nor starts a thread (Start() does). `directory` must
  // outlive the watcher, and only the watcher calls its Rescan() once started.
  DirectoryWatcher(ManifestDirectory& directory, Options options, Listener listener);
  ~DirectoryWatcher();  // Stop()s

  DirectoryWatcher(const DirectoryWatcher&) = delete;
  DirectoryWatcher& operator=(const DirectoryWatcher&) = delete;

  // Scans the directory once, synchronously, and gives that update to the
  // listener (whatever it says); then starts watching, on a thread of its own.
  // A root that is missing or unreadable is not a failure of Start(): it is in
  // the update's source_status, and the watcher notices when that changes.
  // Fails, having called nothing, when inotify cannot be set up
  // (Unavailable), or when the watcher was started before
  // (FailedPrecondition).
  api::Status Start();

  // Stops watching and joins the thread. A scan under way finishes first, so
  // the listener may be called once more before Stop() returns; never after.
  // Idempotent; does nothing when not started.
  void Stop();

  // Asks for a full rescan, soon (after `settle`), even when nothing changed
  // that inotify can see. Does nothing when not running.
  void RequestRescan();

 private:
  enum class State { kNew, kRunning, kStopped };

  void Run();
  bool Stopping() const;
  // Blocks until an event, RequestRescan(), the periodic timer or Stop();
  // true when a rescan is due.
  bool WaitForChange();
  // Waits until the directory has been quiet for `settle` (bounded).
  void Settle();
  // Reads every pending inotify event; true when one calls for a rescan.
  bool DrainEvents();
  // Rescans, re-syncs the watches, re-arms the periodic timer, and tells the
  // listener when there is news. True when a directory is newly watched: it
  // may have changed before its watch was in place, so scan again.
  bool ScanAndWatch(bool first);
  bool SyncWatches();
  void CloseFds();

  ManifestDirectory& directory_;
  const Options options_;
  const Listener listener_;

  mutable std::mutex mu_;
  State state_ = State::kNew;  // guarded by mu_
  std::thread thread_;         // guarded by mu_
  // Set by Start() before the thread starts, closed after it is joined.
  int inotify_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop() and RequestRescan() write to it
  int timer_fd_ = -1;

  // Owned by the watcher's thread (and by Start() before it runs).
  // Watch descriptor -> the only entry name whose events count ("" = any).
  std::map<int, std::string> watches_;
  SourceUpdate last_delivered_;
};

}  // namespace vmlet::manifests
