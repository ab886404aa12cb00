#include "controller/kube_tables.h"

#include "controller/api_query.h"

namespace vmlet::controller {
namespace {

using nlohmann::json;

json VmColumns() {
  return json::array({
      Column("Name", "string", "name",
             "Name must be unique within a namespace: the manifest's metadata.name.", 0),
      Column("Desired", "string", "",
             "What the manifest asks: Running, Paused, Stopped (or "
             "Deleted while its manifest is gone).",
             0),
      Column("Phase", "string", "",
             "What vmlet last observed: Starting, Running, Ready, Paused, Stopped, Failed.", 0),
      Column("IP", "string", "", "The address the guest reported with its ready marker.", 0),
      Column("Restarts", "integer", "", "Reboots after a crash or an unrequested power-off.", 0),
      Column("Age", "string", "",
             "CreationTimestamp: when this vmlet took the VM on (its state directory).", 0),
      // Shown by default, unlike a Pod's NODE: VMs of a fleet are read
      // node by node, and which node answered matters (docs/fleet.md).
      Column("Node", "string", "", "The node that runs it (spec.nodeName, else this node).", 0),
      Column("Driver", "string", "", "The driver of its VMM (else of its manifest).", 1),
  });
}

json EventColumns() {
  return json::array({
      Column("Last Seen", "string", "", "When the event was last seen.", 0),
      Column("Type", "string", "", "Normal or Warning.", 0),
      Column("Reason", "string", "", "Why, in CamelCase.", 0),
      Column("Object", "string", "", "The object it is about.", 0),
      Column("Subobject", "string", "", "The part of the object it is about.", 1),
      Column("Source", "string", "", "Who reported it.", 1),
      Column("Message", "string", "", "What happened, for people.", 0),
      Column("First Seen", "string", "", "When the event was first seen.", 1),
      Column("Count", "integer", "", "How many times it was seen.", 1),
      Column("Name", "string", "name", "The event's name.", 1),
  });
}

// The age of an RFC 3339 time, "<unknown>" when it is none.
std::string AgeSince(const std::string& time, WallTime now) {
  if (time.empty()) return "<unknown>";
  api::StatusOr<WallTime> t = ParseTime(time);
  if (!t.ok()) return "<unknown>";
  return FormatAge(now - *t);
}

}  // namespace

AcceptTable ParseAccept(std::string_view accept) {
  for (std::string_view media : SplitTopLevel(accept, ',')) {
    std::vector<std::string_view> parts = SplitTopLevel(media, ';');
    const std::string_view type = Trim(parts[0]);
    if (type != kJsonContentType && type != "*/*" && type != "application/*") continue;
    std::map<std::string, std::string, std::less<>> params;
    for (size_t i = 1; i < parts.size(); ++i) {
      std::string_view p = Trim(parts[i]);
      const size_t eq = p.find('=');
      if (eq == std::string_view::npos) continue;
      params[std::string(Trim(p.substr(0, eq)))] = std::string(Trim(p.substr(eq + 1)));
    }
    if (params.empty()) return {};  // plain JSON preferred here
    auto as = params.find("as");
    auto g = params.find("g");
    auto v = params.find("v");
    if (as != params.end() && as->second == "Table" && g != params.end() &&
        g->second == "meta.k8s.io" && v != params.end() &&
        (v->second == "v1" || v->second == "v1beta1")) {
      return {true, v->second};
    }
  }
  return {};
}

std::string TableContentType(const AcceptTable& accept) {
  return "application/json;as=Table;v=" + accept.version + ";g=meta.k8s.io";
}

IncludeObject ParseInclude(const std::map<std::string, std::string>& query) {
  auto it = query.find("includeObject");
  if (it == query.end()) return IncludeObject::kMetadata;
  if (it->second == "None") return IncludeObject::kNone;
  if (it->second == "Object") return IncludeObject::kObject;
  return IncludeObject::kMetadata;
}

json Column(std::string_view name, std::string_view type, std::string_view format,
            std::string_view description, int priority) {
  return {{"name", name},
          {"type", type},
          {"format", format},
          {"description", description},
          {"priority", priority}};
}

// cells and the object as includeObject asks.
json VmTable(const std::vector<VmObject>& vms, uint64_t resource_version, bool columns,
             const std::string& table_version, IncludeObject include, const std::string& node_name,
             WallTime now) {
  json rows = json::array();
  for (const VmObject& vm : vms) {
    const VmStatus* status = vm.status ? &*vm.status : nullptr;
    std::string desired = status && !status->desired_state.empty() ? status->desired_state : "";
    if (desired.empty() && vm.desired) desired = api::ToString(vm.desired->spec.desired_state);
    std::string phase = status && !status->phase.empty() ? status->phase : "Unknown";
    // Missing values read "<none>", as the API server's own tables say.
    std::string ip = status && !status->ip.empty() ? status->ip : "<none>";
    std::string node =
        vm.desired && vm.desired->spec.node_name ? *vm.desired->spec.node_name : node_name;
    std::string driver = "<none>";
    if (status && status->vmm) {
      driver = status->vmm->driver;
    } else if (vm.desired) {
      driver = vm.desired->spec.driver;
    }
    json row = {{"cells",
                 {vm.key.name, desired.empty() ? "<none>" : desired, phase, ip,
                  status ? status->restart_count : 0, FormatAge(now - vm.created), node, driver}}};
    if (include == IncludeObject::kMetadata) {
      row["object"] = PartialObjectMetadata(ObjectMeta(vm), table_version);
    } else if (include == IncludeObject::kObject) {
      row["object"] = VmToJson(vm);
    }
    rows.push_back(std::move(row));
  }
  json table = {{"kind", "Table"},
                {"apiVersion", "meta.k8s.io/" + table_version},
                {"metadata", {{"resourceVersion", std::to_string(resource_version)}}},
                {"columnDefinitions", columns ? VmColumns() : json::array()},
                {"rows", std::move(rows)}};
  return table;
}

json EventTable(const std::vector<std::pair<WallTime, json>>& events,
                const std::string& resource_version, const std::string& table_version,
                IncludeObject include, const std::string& node_name, WallTime now) {
  json rows = json::array();
  for (const auto& [time, e] : events) {
    const std::string age = FormatAge(now - time);
    json row = {{"cells",
                 {age, e["type"], e["reason"],
                  "virtualmachine/" + e["involvedObject"]["name"].get<std::string>(), "",
                  "vmlet, " + node_name, e["message"], age, 1, e["metadata"]["name"]}}};
    if (include == IncludeObject::kMetadata) {
      row["object"] = PartialObjectMetadata(e["metadata"], table_version);
    } else if (include == IncludeObject::kObject) {
      row["object"] = e;
    }
    rows.push_back(std::move(row));
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/" + table_version},
          {"metadata", {{"resourceVersion", resource_version}}},
          {"columnDefinitions", EventColumns()},
          {"rows", std::move(rows)}};
}

json NamespaceTable(const std::vector<json>& namespaces, const std::string& resource_version,
                    const std::string& table_version, WallTime now) {
  json rows = json::array();
  for (const json& ns : namespaces) {
    const std::string created = ns["metadata"]["creationTimestamp"];
    rows.push_back({{"cells", {ns["metadata"]["name"], "Active", AgeSince(created, now)}},
                    {"object", PartialObjectMetadata(ns["metadata"], table_version)}});
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/" + table_version},
          {"metadata", {{"resourceVersion", resource_version}}},
          {"columnDefinitions",
           {Column("Name", "string", "name", "The namespace's name.", 0),
            Column("Status", "string", "", "Active while a VM is in it.", 0),
            Column("Age", "string", "", "As old as its oldest VM.", 0)}},
          {"rows", std::move(rows)}};
}

}  // namespace vmlet::controller
