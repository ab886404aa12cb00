#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "api/status.h"
#include "api/vm_key.h"
#include "controller/state_store.h"
#include "controller/vm_source.h"

namespace vmlet::controller {

class Manager;

// The running controller as a VmSource: the manager's desired cache and
// reconciler (the status last written), falling back to status.json on disk
// for VMs the reconciler has not looked at yet (after a vmlet restart). The
// manager and store outlive it.
class ManagerVmSource final : public VmSource {
 public:
  ManagerVmSource(Manager& manager, StateStore& store) : manager_(manager), store_(store) {}

  api::StatusOr<std::vector<api::VmKey>> Keys() const override;
  VmObservation Observe(const api::VmKey& key) const override;
  std::optional<WallTime> CreatedAt(const api::VmKey& key) const override;
  std::vector<Event> RecentEvents(const api::VmKey& key, size_t max) const override;
  bool Synced() const override;

 private:
  Manager& manager_;
  StateStore& store_;
};

}  // namespace vmlet::controller
