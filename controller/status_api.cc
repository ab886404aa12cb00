#include "controller/status_api.h"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "controller/kube_tables.h"

namespace vmlet::controller {
namespace {

using nlohmann::json;
using std::chrono::nanoseconds;
using std::chrono::seconds;

ApiReply JsonReply(int code, const json& body,
                   std::string content_type = std::string(kJsonContentType)) {
  ApiReply reply;
  reply.code = code;
  reply.content_type = std::move(content_type);
  reply.body = body.dump();
  return reply;
}

ApiReply StatusReply(int code, std::string_view reason, std::string_view message,
                     const json& details = nullptr) {
  return JsonReply(code, KubeStatus(code, reason, message, details));
}

ApiReply TextReply(int code, std::string text) {
  ApiReply reply;
  reply.code = code;
  reply.content_type = "text/plain; charset=utf-8";
  reply.body = std::move(text);
  return reply;
}

// The query parameter `key`, "" when absent.
std::string QueryParam(const ApiRequest& request, const std::string& key) {
  auto it = request.query.find(key);
  return it == request.query.end() ? std::string() : it->second;
}

bool QueryFlag(const std::map<std::string, std::string>& query, const std::string& key) {
  auto it = query.find(key);
  return it != query.end() && (it->second == "true" || it->second == "1");
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  for (std::string_view s : SplitTopLevel(path, '/')) {
    if (!s.empty()) segments.push_back(s);
  }
  return segments;
}

json ApiResource(std::string_view name, std::string_view singular, bool namespaced,
                 std::string_view kind, std::vector<std::string> verbs,
                 const std::vector<std::string>& short_names) {
  json r = {{"name", name},
            {"singularName", singular},
            {"namespaced", namespaced},
            {"kind", kind},
            {"verbs", verbs}};
  if (!short_names.empty()) r["shortNames"] = short_names;
  return r;
}

json GroupVersionFor() { return {{"groupVersion", kApiGroupVersion}, {"version", kApiVersion}}; }

json ApiGroup() {
  return {{"name", kApiGroup},
          {"versions", json::array({GroupVersionFor()})},
          {"preferredVersion", GroupVersionFor()}};
}

std::string Platform() {
#if defined(__x86_64__)
  return "linux/amd64";
#elif defined(__aarch64__)
  return "linux/arm64";
#else
  return "linux/unknown";
#endif
}

// The version's major and minor numbers, as strings ("0", "1").
std::pair<std::string, std::string> MajorMinor(const std::string& version) {
  const size_t dot = version.find('.');
  if (dot == std::string::npos) return {version, "0"};
  const size_t dot2 = version.find('.', dot + 1);
  return {version.substr(0, dot),
          version.substr(dot + 1, dot2 == std::string::npos ? std::string::npos : dot2 - dot - 1)};
}

// Does the watch or list with these filters select `vm`?
bool Selects(const std::string& ns, const std::string& name, const LabelSelector& labels,
             const FieldSelector& fields, const VmObject& vm) {
  if (!ns.empty() && vm.key.ns != ns) return false;
  if (!name.empty() && vm.key.name != name) return false;
  if (!labels.Matches(vm.labels())) return false;
  return fields.Matches(
      [&](std::string_view field) { return field == "metadata.name" ? vm.key.name : vm.key.ns; });
}

const std::vector<std::string_view> kVmFields = {"metadata.name", "metadata.namespace"};
const std::vector<std::string_view> kEventFields = {"involvedObject.kind",
                                                    "involvedObject.namespace",
                                                    "involvedObject.name",
                                                    "involvedObject.uid",
                                                    "involvedObject.apiVersion",
                                                    "involvedObject.resourceVersion",
                                                    "involvedObject.fieldPath",
                                                    "reason",
                                                    "reportingComponent",
                                                    "source",
                                                    "type",
                                                    "metadata.name",
                                                    "metadata.namespace"};

}  // namespace

StatusApi::StatusApi(Options options, api::Clock& clock, VmSource& source)
    : options_(std::move(options)),
      clock_(clock),
      source_(source),
      log_(options_.max_changes),
      server_({options_.address, options_.watch_stall}, clock, *this) {}

StatusApi::~StatusApi() { Stop(); }

void StatusApi::Refresh(const api::VmKey& key) {
  VmObservation observed = source_.Observe(key);
  WallTime created{};
  if (observed.exists() && !log_.Contains(key)) {
    created = source_.CreatedAt(key).value_or(clock_.WallNow());
  }
  if (log_.Record(key, observed, created)) server_.Notify();
}

api::Status StatusApi::RefreshAll() {
  api::StatusOr<std::vector<api::VmKey>> keys = source_.Keys();
  if (!keys.ok()) return keys.status();
  std::set<api::VmKey> all(keys->begin(), keys->end());
  for (const VmObject& vm : log_.List().items) all.insert(vm.key);
  for (const api::VmKey& key : all) Refresh(key);
  return api::Status::Ok();
}

api::Status StatusApi::Start() { return server_.Start(); }

void StatusApi::Stop() { server_.Stop(); }

std::map<std::string, size_t> StatusApi::PhaseCounts() const {
  std::map<std::string, size_t> counts;
  for (const VmObject& vm : log_.List().items) {
    const std::string phase = vm.status ? vm.status->phase : "";
    ++counts[phase.empty() ? "Unknown" : phase];
  }
  return counts;
}

ApiReply StatusApi::Handle(const ApiRequest& request) {
  if (request.method != "GET") {
    ApiReply reply = StatusReply(405, "MethodNotAllowed",
                                 "the vmlet API is read-only: " + request.method +
                                     " is not allowed "
                                     "on the requested resource (only GET)");
    reply.headers.emplace_back("Allow", "GET");
    return reply;
  }
  const std::vector<std::string_view> p = SplitPath(request.path);
  if (std::optional<ApiReply> reply = HandleNonResource(p)) return std::move(*reply);
  const auto is = [&](std::initializer_list<std::string_view> want) {
    return p.size() == want.size() && std::equal(want.begin(), want.end(), p.begin());
  };
  if (is({"api", "v1", "namespaces"})) return ListNamespaces(request, std::nullopt);
  if (p.size() == 4 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces") {
    return ListNamespaces(request, std::string(p[3]));
  }
  if (is({"apis", kApiGroup, kApiVersion, kVmResource})) return ListOrWatchVms(request, "");
  if (p.size() >= 6 && p[0] == "apis" && p[1] == kApiGroup && p[2] == kApiVersion &&
      p[3] == "namespaces" && p[5] == kVmResource) {
    if (p.size() == 6) return ListOrWatchVms(request, std::string(p[4]));
    if (p.size() == 7) return GetVm(request, {std::string(p[4]), std::string(p[6])});
  }
  if (is({"api", "v1", "events"})) return ListEvents(request, "", std::nullopt);
  if (p.size() >= 5 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == "events") {
    if (p.size() == 5) return ListEvents(request, std::string(p[3]), std::nullopt);
    if (p.size() == 6) return ListEvents(request, std::string(p[3]), std::string(p[5]));
  }
  return StatusReply(404, "NotFound", "the server could not find the requested resource",
                     {{"causes",
                       {{{"reason", "UnexpectedServerResponse"},
                         {"message", "404 page not found: " + request.path}}}}});
}

std::optional<ApiReply> StatusApi::HandleNonResource(const std::vector<std::string_view>& p) {
  const auto is = [&](std::initializer_list<std::string_view> want) {
    return p.size() == want.size() && std::equal(want.begin(), want.end(), p.begin());
  };
  if (p.empty()) {
    return JsonReply(200,
                     {{"paths",
                       {"/api", "/api/v1", "/apis", "/apis/vmlet.dev", "/apis/vmlet.dev/v1alpha1",
                        "/healthz", "/livez", "/readyz", "/version"}}});
  }
  if (is({"healthz"}) || is({"livez"})) return TextReply(200, "ok");
  if (is({"readyz"})) {
    if (source_.Synced()) return TextReply(200, "ok");
    return TextReply(503, "not ready: the manifest directory has not been read in full yet");
  }
  if (is({"version"})) {
    const auto [major, minor] = MajorMinor(options_.version);
#if defined(__clang__)
    const char* compiler = "clang";
#else
    const char* compiler = "gcc";
#endif
    return JsonReply(200, {{"major", major},
                           {"minor", minor},
                           {"gitVersion", "v" + options_.version},
                           {"gitCommit", ""},
                           {"gitTreeState", ""},
                           {"buildDate", ""},
                           {"goVersion", ""},
                           {"compiler", compiler},
                           {"platform", Platform()}});
  }
  if (is({"api"})) {
    return JsonReply(200, {{"kind", "APIVersions"},
                           {"versions", {"v1"}},
                           {"serverAddressByClientCIDRs",
                            {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", options_.address}}}}});
  }
  if (is({"api", "v1"})) {
    return JsonReply(
        200,
        {{"kind", "APIResourceList"},
         {"apiVersion", "v1"},
         {"groupVersion", "v1"},
         {"resources",
          {ApiResource("events", "event", true, "Event", {"get", "list"}, {"ev"}),
           ApiResource("namespaces", "namespace", false, "Namespace", {"get", "list"}, {"ns"})}}});
  }
  if (is({"apis"})) {
    return JsonReply(
        200,
        {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", json::array({ApiGroup()})}});
  }
  if (is({"apis", kApiGroup})) {
    json group = ApiGroup();
    group["kind"] = "APIGroup";
    group["apiVersion"] = "v1";
    return JsonReply(200, group);
  }
  if (is({"apis", kApiGroup, kApiVersion})) {
    return JsonReply(200, {{"kind", "APIResourceList"},
                           {"apiVersion", "v1"},
                           {"groupVersion", kApiGroupVersion},
                           {"resources",
                            {ApiResource(kVmResource, "virtualmachine", true, kVmKind,
                                         {"get", "list", "watch"}, {"vm"})}}});
  }
  return std::nullopt;
}

ApiReply StatusApi::ListOrWatchVms(const ApiRequest& request, const std::string& ns,
                                   const std::string& name) {
  api::StatusOr<LabelSelector> labels = LabelSelector::Parse(QueryParam(request, "labelSelector"));
  if (!labels.ok()) return StatusReply(400, "BadRequest", labels.status().message());
  api::StatusOr<FieldSelector> fields =
      FieldSelector::Parse(QueryParam(request, "fieldSelector"), kVmFields);
  if (!fields.ok()) return StatusReply(400, "BadRequest", fields.status().message());
  if (QueryFlag(request.query, "watch")) {
    return WatchVms(request, ns, name, std::move(labels).value(), std::move(fields).value());
  }

  const AcceptTable accept = ParseAccept(request.accept);
  VmChangeLog::Listing listing = log_.List();
  std::vector<VmObject> selected;
  for (VmObject& vm : listing.items) {
    if (Selects(ns, name, *labels, *fields, vm)) selected.push_back(std::move(vm));
  }
  if (accept.table) {
    return JsonReply(200,
                     VmTable(selected, listing.resource_version, true, accept.version,
                             ParseInclude(request.query), options_.node_name, clock_.WallNow()),
                     TableContentType(accept));
  }
  json items = json::array();
  for (const VmObject& vm : selected) items.push_back(VmToJson(vm));
  return JsonReply(200,
                   {{"kind", "VirtualMachineList"},
                    {"apiVersion", kApiGroupVersion},
                    {"metadata", {{"resourceVersion", std::to_string(listing.resource_version)}}},
                    {"items", std::move(items)}});
}

ApiReply StatusApi::WatchVms(const ApiRequest& request, const std::string& ns,
                             const std::string& name, LabelSelector labels, FieldSelector fields) {
  const AcceptTable accept = ParseAccept(request.accept);
  auto watch = std::make_shared<WatchState>();
  watch->ns = ns;
  watch->name = name;
  watch->labels = std::move(labels);
  watch->fields = std::move(fields);
  watch->table = accept.table;
  watch->table_version = accept.version;
  watch->include = ParseInclude(request.query);
  const std::string rv = QueryParam(request, "resourceVersion");
  if (rv.empty() || rv == "0") {
    watch->send_initial = true;
  } else if (std::optional<int64_t> v = ParseInt(rv); v && *v >= 0) {
    watch->resource_version = static_cast<uint64_t>(*v);
  } else {
    return StatusReply(400, "BadRequest", "invalid resourceVersion \"" + rv + "\"");
  }
  std::chrono::seconds timeout = options_.max_watch;
  if (std::optional<int64_t> t = ParseInt(QueryParam(request, "timeoutSeconds")); t && *t > 0) {
    timeout = std::min<std::chrono::seconds>(timeout, seconds(*t));
  }
  watch->deadline = clock_.MonotonicNow() + timeout;
  ApiReply reply;
  reply.content_type = std::string(kJsonContentType);
  reply.watch = std::move(watch);
  return reply;
}

ApiReply StatusApi::GetVm(const ApiRequest& request, const api::VmKey& key) {
  if (QueryFlag(request.query, "watch")) return ListOrWatchVms(request, key.ns, key.name);
  std::optional<VmObject> vm = log_.Get(key);
  if (!vm) return JsonReply(404, VmNotFound(key.name));
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    return JsonReply(200,
                     VmTable({*vm}, vm->resource_version, true, accept.version,
                             ParseInclude(request.query), options_.node_name, clock_.WallNow()),
                     TableContentType(accept));
  }
  return JsonReply(200, VmToJson(*vm));
}

ApiReply StatusApi::ListEvents(const ApiRequest& request, const std::string& ns,
                               const std::optional<std::string>& name) {
  if (QueryFlag(request.query, "watch")) {
    return StatusReply(405, "MethodNotAllowed", "events cannot be watched here (get, list)");
  }
  api::StatusOr<FieldSelector> fields =
      FieldSelector::Parse(QueryParam(request, "fieldSelector"), kEventFields);
  if (!fields.ok()) return StatusReply(400, "BadRequest", fields.status().message());
  const std::string rv = std::to_string(log_.resource_version());
  api::StatusOr<std::vector<std::pair<WallTime, json>>> items = SelectEvents(ns, name, *fields, rv);
  if (!items.ok()) return StatusReply(500, "InternalError", items.status().message());

  if (name) {
    if (items->empty()) {
      return StatusReply(404, "NotFound", "events \"" + *name + "\" not found",
                         {{"name", *name}, {"kind", "events"}});
    }
    return JsonReply(200, items->front().second);
  }
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    return JsonReply(200,
                     EventTable(*items, rv, accept.version, ParseInclude(request.query),
                                options_.node_name, clock_.WallNow()),
                     TableContentType(accept));
  }
  json list = json::array();
  for (auto& [time, e] : *items) list.push_back(std::move(e));
  return JsonReply(200, {{"kind", "EventList"},
                         {"apiVersion", "v1"},
                         {"metadata", {{"resourceVersion", rv}}},
                         {"items", std::move(list)}});
}

api::StatusOr<std::vector<std::pair<WallTime, json>>> StatusApi::SelectEvents(
    const std::string& ns, const std::optional<std::string>& name, const FieldSelector& fields,
    const std::string& resource_version) const {
  // Read only the event files the selector can match.
  std::vector<api::VmKey> keys;
  if (std::optional<std::string> vm_name = fields.Required("involvedObject.name")) {
    std::string vm_ns = ns;
    if (vm_ns.empty()) vm_ns = fields.Required("involvedObject.namespace").value_or("");
    if (!vm_ns.empty()) keys.push_back({vm_ns, *vm_name});
  }
  if (keys.empty()) {
    api::StatusOr<std::vector<api::VmKey>> all = source_.Keys();
    if (!all.ok()) return all.status();
    for (const api::VmKey& key : *all) {
      if (ns.empty() || key.ns == ns) keys.push_back(key);
    }
  }

  std::vector<std::pair<WallTime, json>> items;
  for (const api::VmKey& key : keys) {
    std::set<std::string> names;
    for (const Event& e : source_.RecentEvents(key, options_.max_events)) {
      // Events of one VM at the same nanosecond get distinct names.
      WallTime stamp = e.time;
      std::string event_name = EventName(key, stamp);
      while (!names.insert(event_name).second) {
        stamp += nanoseconds(1);
        event_name = EventName(key, stamp);
      }
      const bool match = fields.Matches(
          [&](std::string_view field) { return EventField(key, e, event_name, field); });
      if (!match) continue;
      if (name && event_name != *name) continue;
      items.emplace_back(e.time,
                         EventToJson(key, e, event_name, resource_version, options_.node_name));
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  return items;
}

ApiReply StatusApi::ListNamespaces(const ApiRequest& request,
                                   const std::optional<std::string>& name) {
  // A namespace exists while a VM is in it; it is as old as its oldest VM.
  const VmChangeLog::Listing listing = log_.List();
  std::map<std::string, WallTime> namespaces;
  for (const VmObject& vm : listing.items) {
    auto [it, added] = namespaces.emplace(vm.key.ns, vm.created);
    if (!added) it->second = std::min(it->second, vm.created);
  }
  const std::string rv = std::to_string(listing.resource_version);
  std::vector<json> items;
  for (const auto& [ns, created] : namespaces) {
    if (!name || ns == *name) items.push_back(NamespaceToJson(ns, created, rv));
  }
  if (name && items.empty()) {
    return StatusReply(404, "NotFound", "namespaces \"" + *name + "\" not found",
                       {{"name", *name}, {"kind", "namespaces"}});
  }
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    return JsonReply(200, NamespaceTable(items, rv, accept.version, clock_.WallNow()),
                     TableContentType(accept));
  }
  if (name) return JsonReply(200, items.front());
  return JsonReply(200, {{"kind", "NamespaceList"},
                         {"apiVersion", "v1"},
                         {"metadata", {{"resourceVersion", rv}}},
                         {"items", items}});
}

std::string StatusApi::NextWatchLines(WatchState& watch) {
  std::string out;
  if (watch.done) return out;
  const WallTime now = clock_.WallNow();
  const auto line = [&](std::string_view type, const VmObject& vm) {
    json object;
    if (watch.table) {
      object = VmTable({vm}, vm.resource_version, !watch.columns_sent, watch.table_version,
                       watch.include, options_.node_name, now);
      watch.columns_sent = true;
    } else {
      object = VmToJson(vm);
    }
    out += json{{"type", type}, {"object", std::move(object)}}.dump();
    out += '\n';
  };
  const auto selects = [&](const VmObject& vm) {
    return Selects(watch.ns, watch.name, watch.labels, watch.fields, vm);
  };

  if (watch.send_initial) {
    watch.send_initial = false;
    VmChangeLog::Listing listing = log_.List();
    for (const VmObject& vm : listing.items) {
      if (selects(vm)) line("ADDED", vm);
    }
    watch.resource_version = listing.resource_version;
  }
  VmChangeLog::Changes changes = log_.Since(watch.resource_version);
  if (changes.expired) {
    out += json{{"type", "ERROR"},
                {"object",
                 KubeStatus(410, "Expired",
                            "too old resource version: " + std::to_string(watch.resource_version) +
                                " (" + std::to_string(changes.resource_version) + ")")}}
               .dump();
    out += '\n';
    watch.done = true;
    return out;
  }
  for (const VmChangeLog::Change& change : changes.changes) {
    const bool was = change.previous && selects(*change.previous);
    const bool is = change.type != VmChangeLog::ChangeType::kDeleted && selects(change.object);
    if (was && is) {
      line("MODIFIED", change.object);
    } else if (is) {
      line("ADDED", change.object);
    } else if (was) {
      line("DELETED", change.object);
    }
  }
  watch.resource_version = std::max(watch.resource_version, changes.resource_version);
  if (clock_.MonotonicNow() >= watch.deadline) watch.done = true;
  return out;
}

}  // namespace vmlet::controller
