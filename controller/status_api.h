#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "api/vm_key.h"
#include "controller/api_http_server.h"
#include "controller/api_messages.h"
#include "controller/api_query.h"
#include "controller/kube_objects.h"
#include "controller/vm_change_log.h"
#include "controller/vm_source.h"

namespace vmlet::controller {

// vmlet's read API (docs/api.md), shaped as a Kubernetes API group so that a
// stock kubectl reads it: group vmlet.dev, version v1alpha1, resource
// `virtualmachines` (short name `vm`), plus the VMs' events as core v1
// Events. docs/api.md describes every path. The pieces: api_query.h (query
// strings, selectors), kube_objects.h and kube_tables.h (the objects and
// Tables), vm_change_log.h (objects and their versions), vm_source.h (what
// the API reads of the controller), api_http_server.h (the HTTP side).

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
// read from the VMs' events.jsonl on each request. The HTTP side (sockets,
// watch streams and the pump thread that feeds them) is ApiHttpServer's;
// this class answers the requests.
//
// The constructor opens nothing; Start() binds and starts the pump, Stop()
// ends every watch and closes the socket. Handle(), Refresh() and
// NextWatchLines() are thread-safe.
class StatusApi final : public ApiHandler {
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
  ~StatusApi() override;

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
  ApiReply Handle(const ApiRequest& request) override;
  // For a reply with a watch: the lines its stream gets next ("" when there
  // is nothing new). Sets `watch.done` when the stream is over (its deadline
  // passed, or it fell too far behind: then the last line is an ERROR event
  // with a 410 Expired Status).
  std::string NextWatchLines(WatchState& watch) override;

  const VmChangeLog& log() const { return log_; }
  // How many VMs are in each phase ("" counts as "Unknown"), for systemd's
  // STATUS line.
  std::map<std::string, size_t> PhaseCounts() const;

 private:
  // Discovery, health and version: the paths that are not resources; none
  // for any other path.
  std::optional<ApiReply> HandleNonResource(const std::vector<std::string_view>& path);
  // `name` set: a watch on that one VM.
  ApiReply ListOrWatchVms(const ApiRequest& request, const std::string& ns,
                          const std::string& name = "");
  // A watch of the VMs that `ns`, `name`, `labels` and `fields` select.
  ApiReply WatchVms(const ApiRequest& request, const std::string& ns, const std::string& name,
                    LabelSelector labels, FieldSelector fields);
  ApiReply GetVm(const ApiRequest& request, const api::VmKey& key);
  ApiReply ListEvents(const ApiRequest& request, const std::string& ns,
                      const std::optional<std::string>& name);
  // The events of the VMs in `ns` ("" every namespace) that `fields` (and
  // `name`, when set) select, each with its time, oldest first, stamped
  // with `resource_version`. Error: the
  // source's, when it cannot list its keys.
  api::StatusOr<std::vector<std::pair<WallTime, nlohmann::json>>> SelectEvents(
      const std::string& ns, const std::optional<std::string>& name, const FieldSelector& fields,
      const std::string& resource_version) const;
  // The namespaces that hold VMs (`name` set: that one).
  ApiReply ListNamespaces(const ApiRequest& request, const std::optional<std::string>& name);

  const Options options_;
  api::Clock& clock_;
  VmSource& source_;
  VmChangeLog log_;
  // Last: it calls back into the members above until it is stopped.
  ApiHttpServer server_;
};

}  // namespace vmlet::controller
