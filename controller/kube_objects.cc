#include "controller/kube_objects.h"

#include <cstdio>
#include <ctime>
#include <utility>

#include "manifests/spec_json.h"

namespace vmlet::controller {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;
using std::chrono::seconds;

std::string FormatAge(nanoseconds age) {
  // k8s.io/apimachinery/pkg/util/duration.HumanDuration.
  const int64_t secs = duration_cast<seconds>(age).count();
  if (secs < -1) return "<invalid>";
  if (secs < 0) return "0s";
  if (secs < 60 * 2) return std::to_string(secs) + "s";
  const int64_t minutes = secs / 60;
  if (minutes < 10) {
    const int64_t s = secs % 60;
    if (s == 0) return std::to_string(minutes) + "m";
    return std::to_string(minutes) + "m" + std::to_string(s) + "s";
  }
  if (minutes < 60 * 3) return std::to_string(minutes) + "m";
  const int64_t hours = secs / 3600;
  if (hours < 8) {
    const int64_t m = minutes % 60;
    if (m == 0) return std::to_string(hours) + "h";
    return std::to_string(hours) + "h" + std::to_string(m) + "m";
  }
  if (hours < 48) return std::to_string(hours) + "h";
  if (hours < 24 * 8) {
    const int64_t h = hours % 24;
    if (h == 0) return std::to_string(hours / 24) + "d";
    return std::to_string(hours / 24) + "d" + std::to_string(h) + "h";
  }
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24) + "d";
  if (hours < 24 * 365 * 8) {
    const int64_t days = (hours / 24) % 365;
    if (days == 0) return std::to_string(hours / 24 / 365) + "y";
    return std::to_string(hours / 24 / 365) + "y" + std::to_string(days) + "d";
  }
  return std::to_string(hours / 24 / 365) + "y";
}

std::string FormatKubeTime(WallTime time) {
  const time_t secs = std::chrono::system_clock::to_time_t(std::chrono::floor<seconds>(time));
  tm utc{};
  gmtime_r(&secs, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string VmUid(const api::VmKey& key) {
  const std::string hex =
      manifests::Sha256Hex(std::string(kApiGroupVersion) + "/" + key.ns + "/" + key.name);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

const std::map<std::string, std::string>& VmObject::labels() const {
  static const std::map<std::string, std::string> kNone;
  return desired ? desired->spec.labels : kNone;
}

json VmToJson(const VmObject& vm) {
  json j = {{"apiVersion", kApiGroupVersion}, {"kind", kVmKind}, {"metadata", ObjectMeta(vm)}};
  j["spec"] = vm.desired ? manifests::SpecToJson(vm.desired->spec)["spec"] : json::object();
  j["status"] = vm.status ? ToJson(*vm.status) : json::object();
  return j;
}

json KubeStatus(int code, std::string_view reason, std::string_view message, const json& details) {
  json j = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) j["details"] = details;
  return j;
}

json VmNotFound(std::string_view name) {
  return KubeStatus(404, "NotFound",
                    std::string(kVmResource) + "." + std::string(kApiGroup) + " \"" +
                        std::string(name) + "\" not found",
                    {{"name", name}, {"group", kApiGroup}, {"kind", kVmResource}});
}

json ObjectMeta(const VmObject& vm) {
  json meta = {{"name", vm.key.name},
               {"namespace", vm.key.ns},
               {"uid", VmUid(vm.key)},
               {"generation", vm.generation},
               {"resourceVersion", std::to_string(vm.resource_version)},
               {"creationTimestamp", FormatKubeTime(vm.created)}};
  if (!vm.labels().empty()) meta["labels"] = vm.labels();
  return meta;
}

json PartialObjectMetadata(json metadata, std::string_view table_version) {
  return {{"kind", "PartialObjectMetadata"},
          {"apiVersion", "meta.k8s.io/" + std::string(table_version)},
          {"metadata", std::move(metadata)}};
}

std::string EventName(const api::VmKey& key, WallTime time) {
  const auto ns = duration_cast<nanoseconds>(time.time_since_epoch()).count();
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(ns));
  return key.name + "." + hex;
}

json EventToJson(const api::VmKey& key, const Event& event, const std::string& name,
                 const std::string& resource_version, const std::string& node_name) {
  const std::string when = FormatKubeTime(event.time);
  return {
      {"kind", "Event"},
      {"apiVersion", "v1"},
      {"metadata",
       {{"name", name},
        {"namespace", key.ns},
        {"uid", VmUid({key.ns, name})},
        {"resourceVersion", resource_version},
        {"creationTimestamp", when}}},
      {"involvedObject",
       {{"apiVersion", kApiGroupVersion},
        {"kind", kVmKind},
        {"name", key.name},
        {"namespace", key.ns},
        {"uid", VmUid(key)}}},
      {"reason", event.reason},
      {"message", event.message},
      {"type", event.type},
      {"firstTimestamp", when},
      {"lastTimestamp", when},
      {"eventTime", nullptr},
      {"count", 1},
      {"source", {{"component", "vmlet"}, {"host", node_name}}},
      {"reportingComponent", "vmlet"},
      {"reportingInstance", node_name},
  };
}

std::string EventField(const api::VmKey& key, const Event& event, const std::string& name,
                       std::string_view field) {
  if (field == "involvedObject.kind") return std::string(kVmKind);
  if (field == "involvedObject.namespace" || field == "metadata.namespace") return key.ns;
  if (field == "involvedObject.name") return key.name;
  if (field == "involvedObject.uid") return VmUid(key);
  if (field == "involvedObject.apiVersion") return std::string(kApiGroupVersion);
  if (field == "reason") return event.reason;
  if (field == "type") return event.type;
  if (field == "source" || field == "reportingComponent") return "vmlet";
  if (field == "metadata.name") return name;
  return "";
}

json NamespaceToJson(const std::string& ns, WallTime created, const std::string& resource_version) {
  return json{{"kind", "Namespace"},
              {"apiVersion", "v1"},
              {"metadata",
               {{"name", ns},
                {"uid", VmUid({ns, ""})},
                {"resourceVersion", resource_version},
                {"creationTimestamp", FormatKubeTime(created)}}},
              {"spec", json::object()},
              {"status", {{"phase", "Active"}}}};
}

}  // namespace vmlet::controller
