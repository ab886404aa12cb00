#include "controller/desired_cache.h"

#include <set>

namespace vmlet::controller {

bool DesiredCache::Here(const manifests::DesiredVm& vm) const {
  return !vm.spec.node_name || *vm.spec.node_name == node_name_;
}

bool DesiredCache::InvalidHere(const api::VmKey& key, const manifests::ManifestError& error) const {
  const bool names_us = error.node_name && *error.node_name == node_name_;
  if (snapshot_) {
    if (auto it = snapshot_->vms.find(key); it != snapshot_->vms.end()) {
      // The VM runs here on its last good spec: its error is this node's
      // to show. Placed elsewhere by it: only if the broken document moves
      // it here.
      return Here(*it->second) || names_us;
    }
  }
  // Never valid: every node shows it, unless the document names a node.
  return !error.node_name || names_us;
}

std::vector<api::VmKey> DesiredCache::Apply(const manifests::SourceUpdate& update) {
  std::set<api::VmKey> touched;
  std::lock_guard lock(mu_);
  if (update.source_status.ok()) {
    for (const auto* keys : {&update.diff.added, &update.diff.changed, &update.diff.removed}) {
      touched.insert(keys->begin(), keys->end());
    }
    if (!synced_ && update.snapshot) {
      for (const auto& [key, vm] : update.snapshot->vms) touched.insert(key);
    }
    snapshot_ = update.snapshot;
    synced_ = true;
  }
  // Errors that appeared, changed or went away.
  for (const auto& [key, error] : update.invalid) {
    auto it = invalid_.find(key);
    if (it == invalid_.end() || !(it->second == error)) touched.insert(key);
  }
  for (const auto& [key, error] : invalid_) {
    if (!update.invalid.contains(key)) touched.insert(key);
  }
  invalid_ = update.invalid;
  return {touched.begin(), touched.end()};
}

DesiredEntry DesiredCache::Get(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  DesiredEntry entry;
  if (snapshot_) {
    auto it = snapshot_->vms.find(key);
    if (it != snapshot_->vms.end() && Here(*it->second)) entry.vm = it->second;
  }
  if (auto it = invalid_.find(key); it != invalid_.end() && InvalidHere(key, it->second)) {
    entry.invalid = it->second;
  }
  return entry;
}

std::vector<api::VmKey> DesiredCache::Keys() const {
  std::lock_guard lock(mu_);
  std::set<api::VmKey> keys;
  if (snapshot_) {
    for (const auto& [key, vm] : snapshot_->vms) {
      if (Here(*vm)) keys.insert(key);
    }
  }
  for (const auto& [key, error] : invalid_) {
    if (InvalidHere(key, error)) keys.insert(key);
  }
  return {keys.begin(), keys.end()};
}

bool DesiredCache::synced() const {
  std::lock_guard lock(mu_);
  return synced_;
}

}  // namespace vmlet::controller
