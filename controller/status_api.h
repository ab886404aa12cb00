#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/vm_key.h"
#include "controller/state_store.h"
#include "manifests/directory_source.h"

namespace vmlet::controller {

class Manager;

// vmlet's read API (DESIGN §8), shaped as a Kubernetes API group so that a
// stock kubectl reads it: group vmlet.dev, version v1alpha1, resource
// `virtualmachines` (short name `vm`), plus the VMs' events as core v1
// Events. docs/api.md describes every path; this header holds the pieces.

// ---------------------------------------------------------------------------
// Kubernetes vocabulary (pure functions, no I/O).

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

// The parameters of a URL query string, decoded as Go's url.ParseQuery does
// ('+' is a space, %XX a byte); the first value of a repeated key wins; a
// malformed escape is kept as written.
std::map<std::string, std::string> ParseQuery(std::string_view query);
// Percent-encodes `value` for a query string: every byte but the unreserved
// ones (A-Z a-z 0-9 - . _ ~).
std::string EncodeQueryValue(std::string_view value);

// A Kubernetes label selector: comma-separated requirements, each `key`,
// `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`,
// `key notin (v1,v2)`, `key>N` or `key<N` (integers). All must hold; `!=` and
// `notin` also hold when the label is absent. Empty selects everything.
class LabelSelector {
 public:
  LabelSelector() = default;
  // InvalidArgument with apimachinery's wording ("unable to parse
  // requirement: ...") for anything else.
  static api::StatusOr<LabelSelector> Parse(std::string_view text);
  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kExists, kNotExists, kEquals, kNotEquals, kIn, kNotIn, kGreater, kLess };
  struct Requirement {
    std::string key;
    Op op = Op::kExists;
    std::vector<std::string> values;
  };
  std::vector<Requirement> requirements_;
};

// A Kubernetes field selector: comma-separated `field=value`, `field==value`
// or `field!=value`; in values, a backslash escapes the next character (`\,`,
// `\=`, `\\`). All must hold.
class FieldSelector {
 public:
  FieldSelector() = default;
  // Only the fields in `supported` may be named: any other is InvalidArgument
  // "field label not supported: FIELD", as the API server says.
  static api::StatusOr<FieldSelector> Parse(std::string_view text,
                                            const std::vector<std::string_view>& supported);
  // `value_of(field)` gives the object's value of a supported field.
  bool Matches(const std::function<std::string(std::string_view field)>& value_of) const;
  // The value an `=`/`==` requirement demands of `field`, if there is one
  // (lets a lookup go straight to one VM).
  std::optional<std::string> Required(std::string_view field) const;
  bool empty() const { return requirements_.empty(); }

 private:
  struct Requirement {
    std::string field;
    bool equals = true;
    std::string value;
  };
  std::vector<Requirement> requirements_;
};

// ---------------------------------------------------------------------------
// The VM objects and their change log.

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

// ---------------------------------------------------------------------------
// Where the API's data comes from.

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

// ---------------------------------------------------------------------------
// The API itself.

// One HTTP request, as the API sees it.
struct ApiRequest {
  std::string method = "GET";
  std::string path;                          // "/apis/vmlet.dev/v1alpha1/virtualmachines"
  std::map<std::string, std::string> query;  // decoded (ParseQuery)
  std::string accept;                        // the Accept header; "" when none
};

// What a Table row carries as `object` (the includeObject parameter).
enum class IncludeObject { kNone, kMetadata, kObject };

// An open watch (`?watch=true`): what it selects and how far it has got.
struct WatchState {
  std::string ns;    // "": every namespace
  std::string name;  // "": any name (a watch on one VM's path sets it)
  LabelSelector labels;
  FieldSelector fields;  // metadata.name, metadata.namespace
  // Objects as Tables (meta.k8s.io/<table_version>) of one row each.
  bool table = false;
  std::string table_version = "v1";
  IncludeObject include = IncludeObject::kMetadata;
  // Send ADDED for every current object first (resourceVersion unset or "0").
  bool send_initial = false;
  uint64_t resource_version = 0;  // the last version sent
  bool columns_sent = false;      // the first Table event carries the column definitions
  api::Clock::MonotonicTime deadline{};
  bool done = false;  // the stream is over
};

// One HTTP reply.
struct ApiReply {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Set for a watch: the body is a stream of lines that NextWatchLines()
  // produces, one JSON watch event a line ({"type", "object"}).
  std::shared_ptr<WatchState> watch;
};

// Serves the read API at http://<address>/ with cpprestsdk's http_listener.
// Read-only: any method but GET is 405. Paths (docs/api.md):
//   /healthz /livez /readyz /version
//   /api /api/v1 /apis /apis/vmlet.dev /apis/vmlet.dev/v1alpha1
//   /apis/vmlet.dev/v1alpha1[/namespaces/NS]/virtualmachines[/NAME]
//       (labelSelector, fieldSelector, watch, resourceVersion, timeoutSeconds;
//        Accept: application/json;as=Table;g=meta.k8s.io;v=v1 for a Table)
//   /api/v1[/namespaces/NS]/events[/NAME]   (fieldSelector involvedObject.*)
//   /api/v1/namespaces[/NS]                 (those that hold a VM)
//
// The objects come from its VmChangeLog, which Refresh() feeds; events are
// read from the VMs' events.jsonl on each request. Watches are served by one
// pump thread that writes the new changes to every open stream.
//
// The constructor opens nothing; Start() binds and starts the pump, Stop()
// ends every watch and closes the socket. Handle(), Refresh() and
// NextWatchLines() are thread-safe.
class StatusApi {
 public:
  struct Options {
    // "HOST:PORT" to serve at ("127.0.0.1:9471", "[::1]:9471").
    std::string address = "127.0.0.1:9471";
    // This node's name: the NODE column of VMs that name none, and the
    // events' source.host.
    std::string node_name;
    // gitVersion in /version is "v" + this.
    std::string version = VMLET_VERSION;
    // How many changes the log keeps: a watch from an older version gets
    // 410 Expired and lists again.
    size_t max_changes = 1024;
    // Events read per VM.
    size_t max_events = 200;
    // A watch without timeoutSeconds ends after this (clients watch again).
    std::chrono::seconds max_watch = std::chrono::minutes(30);
    // A watch whose client has not read what was written for this long is
    // ended (cpprestsdk does not say when a client went away).
    std::chrono::seconds watch_stall = std::chrono::seconds(10);
  };

  // `clock` and `source` outlive the API.
  StatusApi(Options options, api::Clock& clock, VmSource& source);
  // Stop().
  ~StatusApi();

  StatusApi(const StatusApi&) = delete;
  StatusApi& operator=(const StatusApi&) = delete;

  // Looks at `key` again (source.Observe) and records it in the change log;
  // call after every reconcile pass of the key.
  void Refresh(const api::VmKey& key);
  // Refresh() for every key the source knows. Error: the source's, when it
  // cannot list its keys.
  api::Status RefreshAll();

  // Binds the address and starts serving. Unavailable, with the address and
  // cpprestsdk's reason, when it cannot. REQUIRES: not started.
  [[nodiscard]] api::Status Start();
  // Ends every watch, stops serving and closes the socket. Idempotent.
  void Stop();

  // Answers one request (no I/O but the source's event files).
  ApiReply Handle(const ApiRequest& request);
  // For a reply with a watch: the lines its stream gets next ("" when there
  // is nothing new). Sets `watch.done` when the stream is over (its deadline
  // passed, or it fell too far behind: then the last line is an ERROR event
  // with a 410 Expired Status).
  std::string NextWatchLines(WatchState& watch);

  const VmChangeLog& log() const { return log_; }
  // How many VMs are in each phase ("" counts as "Unknown"), for systemd's
  // STATUS line.
  std::map<std::string, size_t> PhaseCounts() const;

 private:
  class Server;

  // `name` set: a watch on that one VM.
  ApiReply ListOrWatchVms(const ApiRequest& request, const std::string& ns,
                          const std::string& name = "");
  ApiReply GetVm(const ApiRequest& request, const api::VmKey& key);
  ApiReply ListEvents(const ApiRequest& request, const std::string& ns,
                      const std::optional<std::string>& name);
  // The namespaces that hold VMs (`name` set: that one).
  ApiReply ListNamespaces(const ApiRequest& request, const std::optional<std::string>& name);
  void Pump();

  const Options options_;
  api::Clock& clock_;
  VmSource& source_;
  VmChangeLog log_;
  std::unique_ptr<Server> server_;  // set while started

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  bool changed_ = false;   // guarded by mu_: the pump has something to send
  std::thread pump_;
};

// Sizes cpprestsdk's process-wide thread pool (40 threads unless told),
// which runs the API's handlers; a watch holds no thread. cpprestsdk leaves this to the application: call it from main,
// before anything of cpprestsdk runs. False (and no change) when the pool
// was already started.
bool SizeHttpThreadPool(size_t threads);

// ---------------------------------------------------------------------------
// The client side: `vmlet get` and `vmlet describe` (requests: api_client.h).

// A meta.k8s.io Table printed as kubectl prints it: upper-case headers, the
// priority-0 columns (every column with `wide`), NAMESPACE first (from each
// row's object metadata) with `with_namespace`, aligned as kubectl's
// tabwriter aligns them (3 spaces of padding, no padding after the last).
// Cells that are null print as nothing (the API writes "<none>" itself).
std::string RenderTable(const nlohmann::json& table, bool wide, bool with_namespace);
// `vmlet describe`: Name, Namespace, Labels, UID, Created, then Spec and
// Status as nested "Label:  value" lines (camelCase keys as kubectl's
// describe words them), a Conditions table and an Events table (Type,
// Reason, Age, From, Message; "<none>" when empty). `events` is an EventList.
std::string RenderDescribe(const nlohmann::json& vm, const nlohmann::json& events, WallTime now);

}  // namespace vmlet::controller
