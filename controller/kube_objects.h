#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "api/vm_key.h"
#include "controller/state_store.h"
#include "manifests/directory_source.h"

namespace vmlet::controller {

// The read API's objects, shaped as Kubernetes has them (pure functions, no
// I/O): vmlet's API group, the VirtualMachine object and its metadata, core
// v1 Events and Namespaces, Status errors.

inline constexpr std::string_view kApiGroup = "vmlet.dev";
inline constexpr std::string_view kApiVersion = "v1alpha1";
inline constexpr std::string_view kApiGroupVersion = "vmlet.dev/v1alpha1";
inline constexpr std::string_view kVmResource = "virtualmachines";
inline constexpr std::string_view kVmKind = "VirtualMachine";
inline constexpr std::string_view kJsonContentType = "application/json";

// kubectl's AGE: k8s.io/apimachinery's duration.HumanDuration ("45s",
// "3m20s", "15m", "5h10m", "12h", "3d4h", "20d", "2y30d"). Up to one second
// into the future reads "0s"; further is "<invalid>".
std::string FormatAge(std::chrono::nanoseconds age);
// metav1.Time's form: RFC 3339, UTC, whole seconds ("2026-11-28T03:04:05Z").
std::string FormatKubeTime(WallTime time);
// A VM's metadata.uid: UUID-shaped, derived from its namespace and name (the
// first 128 bits of SHA-256 over "vmlet.dev/v1alpha1/<ns>/<name>"), so it is
// the same on every call and across vmlet restarts.
std::string VmUid(const api::VmKey& key);

// What the controller shows of one VM at one moment.
struct VmObservation {
  // The spec being applied (the last valid one); null when none is desired
  // here (the manifest is gone, or never was valid).
  std::shared_ptr<const manifests::DesiredVm> desired;
  // status.json as last written; none before the VM's first reconcile pass.
  std::optional<VmStatus> status;

  // A VM is served while it is desired here or has a status.
  bool exists() const { return desired != nullptr || status.has_value(); }
};

// One VirtualMachine as the API serves it.
struct VmObject {
  api::VmKey key;
  // The spec as applied. Kept from the last observation that had one while
  // the VM is being deleted (then status.desiredState is "Deleted"); null
  // when this vmlet never saw one.
  std::shared_ptr<const manifests::DesiredVm> desired;
  std::optional<VmStatus> status;
  WallTime created{};             // metadata.creationTimestamp
  int64_t generation = 1;         // +1 for every change of spec this vmlet saw
  uint64_t resource_version = 0;  // the change log's version at its last change

  // metadata.labels: the applied spec's labels (none without a spec).
  const std::map<std::string, std::string>& labels() const;
};

// The VirtualMachine JSON object: {apiVersion, kind, metadata {name,
// namespace, labels, uid, generation, resourceVersion, creationTimestamp},
// spec (SpecToJson's spec), status (status.json's fields)}.
nlohmann::json VmToJson(const VmObject& vm);
// A Kubernetes Status object (kind Status, apiVersion v1, status Failure).
nlohmann::json KubeStatus(int code, std::string_view reason, std::string_view message,
                          const nlohmann::json& details = nullptr);
// The 404 Status for a VM: reason NotFound, message
// `virtualmachines.vmlet.dev "NAME" not found`, details {name, group, kind}.
nlohmann::json VmNotFound(std::string_view name);
// The object's metadata: name, namespace, labels (when it has any), uid,
// generation, resourceVersion, creationTimestamp.
nlohmann::json ObjectMeta(const VmObject& vm);
// meta.k8s.io/<table_version> PartialObjectMetadata around `metadata`.
nlohmann::json PartialObjectMetadata(nlohmann::json metadata, std::string_view table_version);

// An event's metadata.name: "<vm name>.<nanoseconds since the epoch in hex>".
std::string EventName(const api::VmKey& key, WallTime time);
// The core v1 Event `name` for `event` of VM `key`, as `node_name` reports
// it; `resource_version` is the API's current one.
nlohmann::json EventToJson(const api::VmKey& key, const Event& event, const std::string& name,
                           const std::string& resource_version, const std::string& node_name);
// The value of a field selector's `field` for that Event ("" for fields it
// does not carry).
std::string EventField(const api::VmKey& key, const Event& event, const std::string& name,
                       std::string_view field);
// A core v1 Namespace, Active, as old as `created`.
nlohmann::json NamespaceToJson(const std::string& ns, WallTime created,
                               const std::string& resource_version);

}  // namespace vmlet::controller
