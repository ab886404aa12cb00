#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "manifests/directory_source.h"
#include "manifests/manifest_error.h"

namespace vmlet::controller {

// What the manifests ask of one VM on this node.
struct DesiredEntry {
  // The spec to converge to (the last known good one); null when the VM is
  // not wanted on this node: no manifest, deleted, or placed on another node.
  std::shared_ptr<const manifests::DesiredVm> vm;
  // Set when the VM's current manifest is invalid: `vm` is then its last good spec.
  std::optional<manifests::ManifestError> invalid;
};

// The desired state as the reconciler reads it: the directory source's latest
// snapshot, filtered to the VMs placed on this node (spec.nodeName unset or
// equal to `node_name`), plus the manifest errors of the VMs this node runs
// or would run: a broken manifest of another node's VM is that node's
// business (its status there shows it), not an error here.
//
// Thread-safe: the watcher thread applies updates while workers read.
class DesiredCache {
 public:
  explicit DesiredCache(std::string node_name) : node_name_(std::move(node_name)) {}

  // Takes a new source update. Returns the keys whose entry may have changed
  // (added, changed, removed, or whose error appeared, changed or cleared);
  // the caller enqueues them. An update whose source_status is not OK changes
  // no spec, only errors.
  std::vector<api::VmKey> Apply(const manifests::SourceUpdate& update);

  DesiredEntry Get(const api::VmKey& key) const;
  // Every key with an entry (desired here, or invalid).
  std::vector<api::VmKey> Keys() const;
  // True once an update whose source_status was OK has been applied.
  bool synced() const;
  const std::string& node_name() const { return node_name_; }

 private:
  bool Here(const manifests::DesiredVm& vm) const;
  // Whether this node shows `error` of `key`: when the VM's last good spec
  // is placed here, or the broken document places it here, or (never valid)
  // the document names no node. REQUIRES: mu_ held.
  bool InvalidHere(const api::VmKey& key, const manifests::ManifestError& error) const;

  const std::string node_name_;
  mutable std::mutex mu_;
  std::shared_ptr<const manifests::Snapshot> snapshot_;     // guarded by mu_
  std::map<api::VmKey, manifests::ManifestError> invalid_;  // guarded by mu_
  bool synced_ = false;                                     // guarded by mu_
};

}  // namespace vmlet::controller
