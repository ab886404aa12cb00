#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "api/vm_key.h"
#include "controller/kube_objects.h"

namespace vmlet::controller {

// The current VirtualMachine objects and their recent changes, each stamped
// with a global resourceVersion that grows by one per change. It is fed
// (Record) after every reconcile pass with what the controller shows then;
// watches read the changes after the version they start from.
//
// Thread-safe.
class VmChangeLog {
 public:
  enum class ChangeType { kAdded, kModified, kDeleted };
  struct Change {
    ChangeType type = ChangeType::kAdded;
    // The object after the change (for kDeleted: as it was last seen, with
    // the deletion's version).
    VmObject object;
    // The object before it (none for kAdded), so that a watch with a selector
    // can tell an object that moves into or out of it.
    std::optional<VmObject> previous;
  };
  struct Listing {
    uint64_t resource_version = 0;
    std::vector<VmObject> items;  // sorted by key
  };
  struct Changes {
    // The version the log has reached (the last change's).
    uint64_t resource_version = 0;
    // Changes after the asked version, oldest first.
    std::vector<Change> changes;
    // The asked version is older than what the log still holds (410 Gone):
    // `changes` is empty and the watcher must list again.
    bool expired = false;
  };

  // Keeps the last `max_changes` changes (at least 1).
  explicit VmChangeLog(size_t max_changes = 1024);

  // Records what is observed of `key` now. When it differs from the object
  // held (it appeared, its spec or status changed, it is gone), the version
  // grows by one and the change is logged; returns whether it did.
  // `created` is taken only when the object appears. An object's generation
  // grows when its spec changes from one spec to another.
  bool Record(const api::VmKey& key, const VmObservation& observed, WallTime created);

  uint64_t resource_version() const;
  Listing List() const;
  std::optional<VmObject> Get(const api::VmKey& key) const;
  bool Contains(const api::VmKey& key) const;
  // The changes after version `since`.
  Changes Since(uint64_t since) const;

 private:
  const size_t max_changes_;
  mutable std::mutex mu_;
  uint64_t version_ = 0;                // guarded by mu_
  std::map<api::VmKey, VmObject> vms_;  // guarded by mu_
  std::deque<Change> changes_;          // guarded by mu_; oldest first
  uint64_t oldest_kept_ = 1;            // guarded by mu_: versions below are forgotten
};

}  // namespace vmlet::controller
