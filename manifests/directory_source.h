#pragma once

#include <sys/types.h>

#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "api/status.h"
#include "api/vm_key.h"
#include "api/vm_spec.h"
#include "manifests/manifest_error.h"
#include "manifests/manifest_parser.h"

namespace vmlet::manifests {

// One VM the manifest directory asks for.
struct DesiredVm {
  api::VmSpec spec;
  std::string spec_hash;  // BootHash(spec)
  SourceLocation source;  // where its document starts (the path as listed, links not resolved)

  friend bool operator==(const DesiredVm&, const DesiredVm&) = default;
};

// The desired state of every VM, as of one scan. Immutable once published.
// Entries are shared between snapshots: an entry that did not change between
// two scans is the same pointer in both, so copying a snapshot is cheap.
struct Snapshot {
  std::map<api::VmKey, std::shared_ptr<const DesiredVm>> vms;
};

// What changed from one snapshot to the next; each list is sorted by key.
struct SnapshotDiff {
  std::vector<api::VmKey> added;
  std::vector<api::VmKey> changed;  // spec or source location differs
  std::vector<api::VmKey> removed;

  bool empty() const { return added.empty() && changed.empty() && removed.empty(); }
};

// The outcome of one scan of the manifest directory.
struct SourceUpdate {
  // The snapshot after the scan; never null.
  std::shared_ptr<const Snapshot> snapshot;
  // From the previous snapshot to `snapshot`.
  SnapshotDiff diff;
  // Every manifest error known now, in every file: unreadable directories,
  // unreadable files, parse and validation errors, duplicates. When the root
  // itself cannot be listed (see source_status) these are the errors of the
  // last scan that could list it.
  std::vector<ManifestError> errors;
  // The VMs whose current manifest is invalid, duplicated or unreadable, with
  // the error that says why (the first one naming the VM, or else the first
  // error of its file). Such a VM keeps its last known good spec in
  // `snapshot` when it had one (its status shows ManifestValid=False); one
  // that never had a valid spec is here but not in `snapshot`.
  std::map<api::VmKey, ManifestError> invalid;
  // OK, or why the root itself could not be listed (NotFound,
  // PermissionDenied, InvalidArgument). When not OK, nothing was read:
  // `snapshot` is the previous one, `diff` is empty.
  api::Status source_status;
};

// The desired-state source of a manifest directory: walks `root`, parses its
// manifest files, and keeps the last known good spec of every VM (docs/manifests.md).
// Synchronous and thread-free; DirectoryWatcher calls Rescan() when something
// changes.
//
// Rules a scan follows:
//  - A file without errors contributes exactly the VMs it defines.
//  - A file with errors contributes its valid VMs; a VM that came from it and
//    is not valid in it now keeps its last good spec (a half-written or broken
//    file never deletes anything).
//  - A VM defined more than once (in one file or across files) is rejected in
//    every copy; it keeps its last good spec, if it had one. So does any VM
//    an error names.
//  - A file no longer listed takes its VMs out of the snapshot, unless it is
//    under a directory that could not be read; a listed file that cannot be
//    read keeps its VMs. Both are reported as errors.
//  - When the root is missing, unreadable or not a directory (or file), the
//    scan fails as a whole (SourceUpdate::source_status) and changes nothing.
//
// Files are listed with ListManifestFiles (recursive, names starting with '.'
// and editor temp files skipped, symlinks followed). A file is read and
// parsed again only when the stat of what it resolves to (device, inode,
// size, mtime, ctime) changed since it was last read; so a symlink swap
// (git-sync, ConfigMap volumes) is seen, and an unchanged file costs a stat.
//
// Thread-safety: snapshot() may be called from any thread. Rescan() must not
// run on two threads at once; once a DirectoryWatcher runs on this source,
// only the watcher calls it.
class ManifestDirectory {
 public:
  ManifestDirectory(std::string root, ParseOptions options);

  ManifestDirectory(const ManifestDirectory&) = delete;
  ManifestDirectory& operator=(const ManifestDirectory&) = delete;

  const std::string& root() const { return root_; }

  // Lists and stats every manifest file, reparses the ones that changed, and
  // publishes the resulting snapshot (by the rules above). Never fails as a
  // call: failures are in the returned update.
  SourceUpdate Rescan();

  // The snapshot published by the last Rescan(); empty before the first.
  // Never null.
  std::shared_ptr<const Snapshot> snapshot() const;

 private:
  // What a file resolved to when it was last read; a change means "read again".
  struct FileStat {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    timespec mtime{};
    timespec ctime{};

    bool operator==(const FileStat& other) const;
  };

  // A file as it was last read and parsed.
  struct ParsedFile {
    FileStat stat;
    std::vector<std::shared_ptr<const DesiredVm>> vms;  // its valid VMs
    std::vector<ManifestError> errors;                  // its parse errors
  };

  // The parse of `path`: the cached one when what it resolves to has the
  // same stat as when it was cached, else read and parsed again (reusing
  // `previous`'s entry for each VM that did not change). An error when it
  // cannot be stat'ed or read.
  api::StatusOr<ParsedFile> Parse(const std::string& path, const Snapshot& previous) const;

  const std::string root_;
  const ParseOptions options_;

  // Touched only by Rescan(). Keyed by the path as listed.
  std::map<std::string, ParsedFile> files_;
  std::vector<ManifestError> last_errors_;
  std::map<api::VmKey, ManifestError> last_invalid_;

  mutable std::mutex mu_;
  std::shared_ptr<const Snapshot> snapshot_;  // guarded by mu_
};

}  // namespace vmlet::manifests
