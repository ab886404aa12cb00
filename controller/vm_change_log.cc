#include "controller/vm_change_log.h"

#include <algorithm>
#include <memory>
#include <utility>

namespace vmlet::controller {

VmChangeLog::VmChangeLog(size_t max_changes) : max_changes_(std::max<size_t>(1, max_changes)) {}

namespace {

bool SameSpec(const std::shared_ptr<const manifests::DesiredVm>& a,
              const std::shared_ptr<const manifests::DesiredVm>& b) {
  if (a == b) return true;
  return a && b && a->spec == b->spec;
}

}  // namespace

bool VmChangeLog::Record(const api::VmKey& key, const VmObservation& observed, WallTime created) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(key);
  Change change;
  if (!observed.exists()) {
    if (it == vms_.end()) return false;
    change.type = ChangeType::kDeleted;
    change.previous = it->second;
    change.object = it->second;
    change.object.resource_version = ++version_;
    vms_.erase(it);
  } else if (it == vms_.end()) {
    change.type = ChangeType::kAdded;
    change.object = VmObject{key, observed.desired, observed.status, created, 1, ++version_};
    vms_.emplace(key, change.object);
  } else {
    VmObject& now = it->second;
    // While a VM is being deleted its last spec stays (status says Deleted).
    const std::shared_ptr<const manifests::DesiredVm>& spec =
        observed.desired ? observed.desired : now.desired;
    const bool spec_changed = !SameSpec(now.desired, spec);
    if (!spec_changed && now.status == observed.status) {
      now.desired = spec;  // an equal spec from a newer scan
      return false;
    }
    change.type = ChangeType::kModified;
    change.previous = now;
    if (spec_changed && now.desired && spec) ++now.generation;
    now.desired = spec;
    now.status = observed.status;
    now.resource_version = ++version_;
    change.object = now;
  }
  changes_.push_back(std::move(change));
  while (changes_.size() > max_changes_) {
    oldest_kept_ = changes_.front().object.resource_version + 1;
    changes_.pop_front();
  }
  return true;
}

uint64_t VmChangeLog::resource_version() const {
  std::lock_guard lock(mu_);
  return version_;
}

VmChangeLog::Listing VmChangeLog::List() const {
  std::lock_guard lock(mu_);
  Listing listing;
  listing.resource_version = version_;
  listing.items.reserve(vms_.size());
  for (const auto& [key, vm] : vms_) listing.items.push_back(vm);
  return listing;
}

bool VmChangeLog::Contains(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  return vms_.contains(key);
}

std::optional<VmObject> VmChangeLog::Get(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(key);
  if (it == vms_.end()) return std::nullopt;
  return it->second;
}

VmChangeLog::Changes VmChangeLog::Since(uint64_t since) const {
  std::lock_guard lock(mu_);
  Changes out;
  out.resource_version = version_;
  if (since + 1 < oldest_kept_) {
    out.expired = true;
    return out;
  }
  // Versions are consecutive: the change with version v sits at v - first.
  if (!changes_.empty() && since < version_) {
    const uint64_t first = changes_.front().object.resource_version;
    for (size_t i = since >= first ? since - first + 1 : 0; i < changes_.size(); ++i) {
      out.changes.push_back(changes_[i]);
    }
  }
  return out;
}

}  // namespace vmlet::controller
