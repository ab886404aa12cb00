#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "controller/kube_objects.h"

namespace vmlet::controller {

// The read API's meta.k8s.io Tables, the form kubectl's `get` asks for (pure
// functions, no I/O).

// What a Table row carries as `object` (the includeObject parameter).
enum class IncludeObject { kNone, kMetadata, kObject };

// What the Accept header asks for: a Table (of which meta.k8s.io version),
// or plain JSON.
struct AcceptTable {
  bool table = false;
  std::string version = "v1";
};

// The first media type of `accept` that vmlet serves: a Table for
// `application/json;as=Table;g=meta.k8s.io;v=v1` (or v1beta1), plain JSON
// for any other JSON type without parameters.
AcceptTable ParseAccept(std::string_view accept);
// The Content-Type of a Table reply.
std::string TableContentType(const AcceptTable& accept);
// The includeObject parameter (Metadata when absent or unknown).
IncludeObject ParseInclude(const std::map<std::string, std::string>& query);

// A Table column definition.
nlohmann::json Column(std::string_view name, std::string_view type, std::string_view format,
                      std::string_view description, int priority);

// The Table of `vms`: the column definitions (when `columns`), and per VM its
// cells (NAME DESIRED PHASE IP RESTARTS AGE NODE, and DRIVER at priority 1)
// and the object as `include` asks. `node_name` is the NODE of VMs whose spec
// names none; AGE is counted to `now`.
nlohmann::json VmTable(const std::vector<VmObject>& vms, uint64_t resource_version, bool columns,
                       const std::string& table_version, IncludeObject include,
                       const std::string& node_name, WallTime now);
// The Table of events (EventToJson's objects, with their times), as kubectl
// shows events.
nlohmann::json EventTable(const std::vector<std::pair<WallTime, nlohmann::json>>& events,
                          const std::string& resource_version, const std::string& table_version,
                          IncludeObject include, const std::string& node_name, WallTime now);
// The Table of namespaces (NamespaceToJson's objects): NAME STATUS AGE.
nlohmann::json NamespaceTable(const std::vector<nlohmann::json>& namespaces,
                              const std::string& resource_version, const std::string& table_version,
                              WallTime now);

}  // namespace vmlet::controller
