#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/vm_key.h"
#include "controller/rfc3339_time.h"
#include "controller/state_json.h"
#include "controller/vm_event.h"
#include "controller/vm_record.h"
#include "controller/vm_status.h"

namespace vmlet::controller {

// The per-VM state directory (docs/reconcile.md, "Identity"), whose files hold a VmRecord
// (vm_record.h), a VmStatus (vm_status.h) and Events (vm_event.h) in their
// JSON forms (state_json.h):
//   <state-dir>/vms/<namespace>/<name>/{record.json, status.json, events.jsonl, ...}
// The VMM's own files (sockets, serial.log, vmm.log) live in the same
// directory, which the driver is given as vm_dir.
//
// Writes are atomic: a temporary file in the same directory, fsync, rename,
// fsync of the directory; a crash leaves the old or the new file, never a
// torn one. record.json is synced (file and directory) when it records an
// action on the host (Durability::kDurable), else only replaced atomically;
// status.json is renamed atomically but synced only when
// Options::sync_status is set (it is re-derived).
//
// Every per-VM call checks that the key's namespace and name are valid names
// (api::ValidateName: so never "", "." or "..", never a '/') and fails with
// InvalidArgument otherwise: a key never reaches outside <state-dir>/vms.
// I/O failures are Status values with the path and errno text: NotFound for
// ENOENT, PermissionDenied for EACCES/EPERM, Unavailable for the rest.
//
// Thread-safe for different keys, from any threads; calls for one key are not
// concurrent (one worker per key). No lock is held across I/O.
class StateStore {
 public:
  struct Options {
    // fsync status.json (and the directory) on every SaveStatus. Default off:
    // status is re-derived from the host, so losing the last write is harmless.
    bool sync_status = false;
    // events.jsonl keeps about the last this many lines: it is trimmed to
    // exactly this many when it grows past twice as many. 0 counts as 1.
    size_t max_events = 200;
    // vmlet run --vmm-user: the VMMs' group. The state dir, vms/ and each
    // namespace's directory are then 0711 (the VMM user may pass through,
    // not list them), and each VM directory root:GROUP 01770, so that the
    // VMM can create its sockets there, and cannot remove or replace
    // vmlet's files (sticky). Nothing: every directory 0700 but the state
    // dir (0711).
    std::optional<gid_t> vmm_group = std::nullopt;
  };

  // `clock` (its wall time names quarantined records) must outlive the
  // store. Touches no files: Init() does.
  StateStore(std::string state_dir, const api::Clock& clock, Options options);
  StateStore(std::string state_dir, const api::Clock& clock)
      : StateStore(std::move(state_dir), clock, Options{}) {}

  // Creates <state-dir> (with any missing parents, like mkdir -p) and
  // <state-dir>/vms, each only if missing. The directories it creates get mode
  // 0711 (the state dir) and 0700 (vms), whatever the umask; existing ones
  // keep theirs. FailedPrecondition when the state dir (or vms) exists but is
  // not a directory. Call before anything else.
  api::Status Init();

  // As given, without trailing slashes.
  const std::string& state_dir() const { return state_dir_; }
  // <state-dir>/vms/<namespace>/<name>. Only builds the path.
  std::string VmDir(const api::VmKey& key) const;
  bool VmDirExists(const api::VmKey& key) const;
  // Creates the namespace directory and the VM directory (0700) if missing,
  // and fsyncs the parents of what it created, so a record written into it
  // survives a crash.
  api::Status EnsureVmDir(const api::VmKey& key);

  struct LoadedRecord {
    std::optional<VmRecord> record;  // none: no record.json, or it was corrupt
    // Set when record.json was corrupt: where it was moved
    // (record.json.corrupt-<time>), and what was wrong with it.
    std::optional<std::string> quarantined_to;
    std::string problem;
  };
  // Reads record.json. No record.json (or no VM directory): no record. A
  // file that is empty, not valid JSON or not a valid record (including an
  // unknown version) is renamed to record.json.corrupt-<YYYYMMDDTHHMMSSZ>
  // (then -1, -2, ... if that name is taken) in the same directory, its bytes
  // untouched, and reported in the result, not as an error: the next
  // LoadRecord finds no record. Errors are only I/O failures, such as a
  // record.json that cannot be read or moved (the caller retries).
  api::StatusOr<LoadedRecord> LoadRecord(const api::VmKey& key);
  // How durable a record write must be. kDurable (temp, fsync, rename, fsync
  // of the directory) for every change that follows or precedes an action on
  // the host (a VMM launched, asked to stop, gone); kAtomic (temp, rename:
  // a crash of vmlet still leaves the old or the new file, a crash of the
  // host may leave the old one) for bookkeeping that the next pass can
  // re-derive (when the guest became ready, a crash loop's reset).
  enum class Durability { kDurable, kAtomic };
  // Replaces record.json atomically, and durably unless told otherwise.
  // REQUIRES: EnsureVmDir(key) (without the directory: NotFound).
  api::Status SaveRecord(const api::VmKey& key, const VmRecord& record,
                         Durability durability = Durability::kDurable);

  // Reads status.json; none when absent, unreadable or malformed (it is
  // re-derived).
  std::optional<VmStatus> LoadStatus(const api::VmKey& key);
  // Replaces status.json atomically. Invalid UTF-8 in strings is replaced by
  // U+FFFD. REQUIRES: EnsureVmDir(key).
  api::Status SaveStatus(const api::VmKey& key, const VmStatus& status);

  // Appends one line to events.jsonl (created if missing; no fsync) with one
  // write(), trimming the file to the last Options::max_events lines (an
  // atomic rewrite) when it grows past twice that; the cost is O(1)
  // amortized. Invalid UTF-8 is replaced by U+FFFD. A failed trim is
  // reported as an error although the line was appended; the trim is retried
  // on the next append. REQUIRES: EnsureVmDir(key).
  api::Status AppendEvent(const api::VmKey& key, const Event& event);
  // The last `max` events, oldest first; malformed lines are skipped.
  std::vector<Event> RecentEvents(const api::VmKey& key, size_t max) const;

  // What the store holds of one VM, read in one call (LoadVm).
  struct StoredVm {
    bool dir_exists = false;
    // With Read::kFiles only: LoadRecord's and LoadStatus's results.
    LoadedRecord record;
    std::optional<VmStatus> status;
  };
  enum class Read {
    kDirectory,  // only whether the VM directory exists
    kFiles,      // that, and record.json and status.json
  };
  // Whether the VM's directory exists and, with kFiles, its record (by
  // LoadRecord's rules: a corrupt one is quarantined and reported) and
  // status (LoadStatus's). Errors: an invalid key, and LoadRecord's.
  api::StatusOr<StoredVm> LoadVm(const api::VmKey& key, Read read);

  // What one reconcile pass changed of a VM, written in one call (Commit).
  struct VmChanges {
    // Create the VM directory (EnsureVmDir) before writing the status.
    bool ensure_dir = false;
    // record.json's new content, as durable as `record_durability` says.
    std::optional<VmRecord> record;
    Durability record_durability = Durability::kAtomic;
    // Appended to events.jsonl, in order, when the VM directory exists.
    std::vector<Event> events;
    // status.json's new content.
    std::optional<VmStatus> status;

    bool empty() const { return !ensure_dir && !record && events.empty() && !status; }
  };
  // How each part of a Commit went (OK for parts that had nothing to do).
  struct CommitResult {
    api::Status dir;
    api::Status record;
    api::Status events;  // the first failed append
    api::Status status;  // the directory's error when it could not be made
  };
  // Writes `changes` in this order, each part as its own call above says:
  // the directory, the record (before the events and the status: a record
  // that follows an action on the host is on disk before anything else is
  // written about it), the events, the status. A failed part does not stop
  // the later ones, but for the status, which needs the directory
  // `ensure_dir` asked for.
  CommitResult Commit(const api::VmKey& key, const VmChanges& changes);

  // Removes the VM's directory and everything in it, then its namespace
  // directory if that is now empty. OK when already gone.
  api::Status RemoveVmDir(const api::VmKey& key);

  // Every VM with a directory under <state-dir>/vms, sorted by (namespace,
  // name). Entries that are not directories or whose names are not valid
  // names (api::ValidateName) are skipped. No vms directory: empty. A
  // directory that cannot be read is an error (a VM must not go unseen).
  api::StatusOr<std::vector<api::VmKey>> ListVms() const;

 private:
  // Writes `content` to <dir>/<name> through a temporary file (see above);
  // `sync` fsyncs the file and the directory.
  api::Status WriteFileAtomically(const std::string& dir, const std::string& name,
                                  std::string_view content, bool sync);
  // Rewrites events.jsonl with its last max_events lines; returns how many
  // lines it kept.
  api::StatusOr<size_t> TrimEvents(const std::string& dir);
  size_t max_events() const { return options_.max_events == 0 ? 1 : options_.max_events; }

  std::string state_dir_;
  const api::Clock& clock_;
  Options options_;
  std::atomic<uint64_t> temp_counter_{0};  // makes temporary file names unique

  std::mutex mu_;
  // Lines in each VM's events.jsonl as far as this process knows: counted
  // from the file on the first append, then kept up to date by appends.
  std::unordered_map<api::VmKey, size_t, api::VmKeyHash> event_lines_;  // guarded by mu_
};

}  // namespace vmlet::controller
