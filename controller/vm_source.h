#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "api/status.h"
#include "api/vm_key.h"
#include "controller/kube_objects.h"
#include "controller/state_store.h"

namespace vmlet::controller {

// What the API reads of the controller. Thread-safe.
class VmSource {
 public:
  virtual ~VmSource() = default;
  // Every VM that may have an object or events: desired here, invalid, or
  // with a state directory.
  virtual api::StatusOr<std::vector<api::VmKey>> Keys() const = 0;
  virtual VmObservation Observe(const api::VmKey& key) const = 0;
  // When vmlet took the VM on (its state directory's birth time), if known.
  virtual std::optional<WallTime> CreatedAt(const api::VmKey& key) const = 0;
  // The VM's last `max` events, oldest first.
  virtual std::vector<Event> RecentEvents(const api::VmKey& key, size_t max) const = 0;
  // True once the manifest directory has been read in full once.
  virtual bool Synced() const = 0;
};

}  // namespace vmlet::controller
