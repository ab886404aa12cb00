#include "controller/state_json.h"

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "controller/rfc3339_time.h"

namespace vmlet::controller {
namespace {

using api::Status;
using api::StatusOr;
using nlohmann::json;

constexpr int64_t kRecordVersion = 1;

// ---------------------------------------------------------------------------
// JSON fields: strict about the types of known fields, silent about others.

std::string FieldName(std::string_view prefix, std::string_view key) {
  std::string name(prefix);
  if (!name.empty()) name += '.';
  name += key;
  return name;
}

Status Missing(std::string_view prefix, std::string_view key) {
  return Status::InvalidArgument(FieldName(prefix, key) + ": missing");
}

Status WrongType(std::string_view prefix, std::string_view key, std::string_view what) {
  return Status::InvalidArgument(FieldName(prefix, key) + ": must be " + std::string(what));
}

Status ReadString(const json& obj, const char* key, std::string_view prefix, bool required,
                  std::string& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? Missing(prefix, key) : Status::Ok();
  if (!it->is_string()) return WrongType(prefix, key, "a string");
  out = it->get<std::string>();
  return Status::Ok();
}

Status ReadBool(const json& obj, const char* key, std::string_view prefix, bool& out) {
  auto it = obj.find(key);
  if (it == obj.end()) return Status::Ok();
  if (!it->is_boolean()) return WrongType(prefix, key, "a boolean");
  out = it->get<bool>();
  return Status::Ok();
}

// An integer that fits Int and is at least `min`.
template <typename Int>
Status ReadInt(const json& obj, const char* key, std::string_view prefix, bool required, Int& out,
               Int min = std::numeric_limits<Int>::min()) {
  auto it = obj.find(key);
  if (it == obj.end()) return required ? Missing(prefix, key) : Status::Ok();
  if (!it->is_number_integer()) return WrongType(prefix, key, "an integer");
  bool fits = false;
  Int value{};
  if (it->is_number_unsigned()) {
    const uint64_t v = it->get<uint64_t>();
    fits = std::in_range<Int>(v);
    if (fits) value = static_cast<Int>(v);
  } else {
    const int64_t v = it->get<int64_t>();
    fits = std::in_range<Int>(v);
    if (fits) value = static_cast<Int>(v);
  }
  if (!fits || value < min) {
    return Status::InvalidArgument(FieldName(prefix, key) + ": out of range");
  }
  out = value;
  return Status::Ok();
}

// Absent or null: none.
Status ReadOptionalTime(const json& obj, const char* key, std::string_view prefix,
                        std::optional<WallTime>& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    out.reset();
    return Status::Ok();
  }
  if (!it->is_string()) return WrongType(prefix, key, "an RFC 3339 time string");
  StatusOr<WallTime> time = ParseTime(it->get_ref<const std::string&>());
  if (!time.ok()) {
    return Status::InvalidArgument(FieldName(prefix, key) + ": " + time.status().message());
  }
  out = *time;
  return Status::Ok();
}

Status ReadRequiredTime(const json& obj, const char* key, std::string_view prefix, WallTime& out) {
  if (!obj.contains(key)) return Missing(prefix, key);
  std::optional<WallTime> time;
  if (Status s = ReadOptionalTime(obj, key, prefix, time); !s.ok()) return s;
  if (!time) return WrongType(prefix, key, "an RFC 3339 time string");
  out = *time;
  return Status::Ok();
}

void PutTime(json& j, const char* key, const std::optional<WallTime>& time) {
  if (time) j[key] = FormatTime(*time);
}

// A phase's name ("Stopped"); absent or "": none.
Status ReadPhase(const json& obj, const char* key, std::optional<api::VmState::Phase>& out) {
  std::string name;
  VMLET_RETURN_IF_ERROR(ReadString(obj, key, "", false, name));
  out.reset();
  if (name.empty()) return Status::Ok();
  for (api::VmState::Phase phase : {api::VmState::Phase::kStarting, api::VmState::Phase::kRunning,
                                    api::VmState::Phase::kReady, api::VmState::Phase::kPaused,
                                    api::VmState::Phase::kStopped, api::VmState::Phase::kFailed}) {
    if (api::PhaseName(phase) == name) {
      out = phase;
      return Status::Ok();
    }
  }
  return Status::InvalidArgument(FieldName("", key) + ": \"" + name + "\" is not a phase");
}

StatusOr<drivers::VmmHandle> VmmHandleFromJson(const json& j) {
  constexpr std::string_view kPrefix = "vmm";
  if (!j.is_object()) return Status::InvalidArgument("vmm: must be an object");
  drivers::VmmHandle vmm;
  VMLET_RETURN_IF_ERROR(ReadString(j, "driver", kPrefix, true, vmm.driver));
  // pid 0 or below would make a signal reach a process group: never.
  VMLET_RETURN_IF_ERROR(ReadInt<pid_t>(j, "pid", kPrefix, true, vmm.process.pid, 1));
  VMLET_RETURN_IF_ERROR(
      ReadInt<uint64_t>(j, "startTimeTicks", kPrefix, true, vmm.process.start_time_ticks));
  VMLET_RETURN_IF_ERROR(ReadString(j, "bootId", kPrefix, true, vmm.boot_id));
  VMLET_RETURN_IF_ERROR(ReadString(j, "vmDir", kPrefix, true, vmm.vm_dir));
  VMLET_RETURN_IF_ERROR(ReadString(j, "socketPath", kPrefix, true, vmm.socket_path));
  return vmm;
}

StatusOr<Condition> ConditionFromJson(const json& j, const std::string& prefix) {
  if (!j.is_object()) return Status::InvalidArgument(prefix + ": must be an object");
  Condition c;
  VMLET_RETURN_IF_ERROR(ReadString(j, "type", prefix, true, c.type));
  VMLET_RETURN_IF_ERROR(ReadString(j, "status", prefix, true, c.status));
  VMLET_RETURN_IF_ERROR(ReadString(j, "reason", prefix, false, c.reason));
  VMLET_RETURN_IF_ERROR(ReadString(j, "message", prefix, false, c.message));
  VMLET_RETURN_IF_ERROR(ReadRequiredTime(j, "lastTransitionTime", prefix, c.last_transition_time));
  return c;
}

}  // namespace

json ToJson(const VmRecord& record) {
  json j = json::object();
  j["version"] = kRecordVersion;
  j["driver"] = record.driver;
  if (record.vmm) {
    json vmm = json::object();
    vmm["driver"] = record.vmm->driver;
    vmm["pid"] = record.vmm->process.pid;
    vmm["startTimeTicks"] = record.vmm->process.start_time_ticks;
    vmm["bootId"] = record.vmm->boot_id;
    vmm["vmDir"] = record.vmm->vm_dir;
    vmm["socketPath"] = record.vmm->socket_path;
    j["vmm"] = std::move(vmm);
  }
  j["specHash"] = record.spec_hash;
  PutTime(j, "bootRequestedAt", record.boot_requested_at);
  PutTime(j, "readyAt", record.ready_at);
  j["stopRequested"] = record.stop_requested;
  PutTime(j, "stopRequestedAt", record.stop_requested_at);
  j["stopGraceSeconds"] = record.stop_grace_seconds;
  j["restartCount"] = record.restart_count;
  j["consecutiveFailures"] = record.consecutive_failures;
  j["lastExitPhase"] =
      record.last_exit_phase ? std::string(api::PhaseName(*record.last_exit_phase)) : "";
  j["lastExitReason"] = record.last_exit_reason;
  PutTime(j, "restartNotBefore", record.restart_not_before);
  return j;
}

json ToJson(const VmStatus& status) {
  json j = json::object();
  j["phase"] = status.phase;
  j["ip"] = status.ip;
  j["reason"] = status.reason;
  j["desiredState"] = status.desired_state;
  j["observedGeneration"] = status.observed_generation;
  json conditions = json::array();
  for (const Condition& c : status.conditions) {
    json cj = json::object();
    cj["type"] = c.type;
    cj["status"] = c.status;
    cj["reason"] = c.reason;
    cj["message"] = c.message;
    cj["lastTransitionTime"] = FormatTime(c.last_transition_time);
    conditions.push_back(std::move(cj));
  }
  j["conditions"] = std::move(conditions);
  j["restartCount"] = status.restart_count;
  if (status.last_boot_duration_seconds) {
    j["lastBootDurationSeconds"] = *status.last_boot_duration_seconds;
  }
  if (status.vmm) {
    json vmm = json::object();
    vmm["driver"] = status.vmm->driver;
    vmm["pid"] = status.vmm->pid;
    vmm["startTimeTicks"] = status.vmm->start_time_ticks;
    j["vmm"] = std::move(vmm);
  }
  return j;
}

json ToJson(const Event& event) {
  json j = json::object();
  j["time"] = FormatTime(event.time);
  j["type"] = event.type;
  j["reason"] = event.reason;
  j["message"] = event.message;
  return j;
}

StatusOr<VmRecord> VmRecordFromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("record: must be a JSON object");
  int64_t version = 0;
  VMLET_RETURN_IF_ERROR(ReadInt<int64_t>(j, "version", "", true, version));
  if (version != kRecordVersion) {
    return Status::InvalidArgument("version: " + std::to_string(version) +
                                   " is not a known record version (1)");
  }
  VmRecord r;
  VMLET_RETURN_IF_ERROR(ReadString(j, "driver", "", true, r.driver));
  if (auto it = j.find("vmm"); it != j.end() && !it->is_null()) {
    StatusOr<drivers::VmmHandle> vmm = VmmHandleFromJson(*it);
    if (!vmm.ok()) return vmm.status();
    r.vmm = std::move(vmm).value();
  }
  VMLET_RETURN_IF_ERROR(ReadString(j, "specHash", "", true, r.spec_hash));
  VMLET_RETURN_IF_ERROR(ReadOptionalTime(j, "bootRequestedAt", "", r.boot_requested_at));
  VMLET_RETURN_IF_ERROR(ReadOptionalTime(j, "readyAt", "", r.ready_at));
  VMLET_RETURN_IF_ERROR(ReadBool(j, "stopRequested", "", r.stop_requested));
  VMLET_RETURN_IF_ERROR(ReadOptionalTime(j, "stopRequestedAt", "", r.stop_requested_at));
  VMLET_RETURN_IF_ERROR(
      ReadInt<int64_t>(j, "stopGraceSeconds", "", false, r.stop_grace_seconds, 0));
  VMLET_RETURN_IF_ERROR(ReadInt<uint32_t>(j, "restartCount", "", false, r.restart_count));
  VMLET_RETURN_IF_ERROR(
      ReadInt<uint32_t>(j, "consecutiveFailures", "", false, r.consecutive_failures));
  VMLET_RETURN_IF_ERROR(ReadPhase(j, "lastExitPhase", r.last_exit_phase));
  VMLET_RETURN_IF_ERROR(ReadString(j, "lastExitReason", "", false, r.last_exit_reason));
  VMLET_RETURN_IF_ERROR(ReadOptionalTime(j, "restartNotBefore", "", r.restart_not_before));
  return r;
}

StatusOr<VmStatus> VmStatusFromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("status: must be a JSON object");
  VmStatus s;
  VMLET_RETURN_IF_ERROR(ReadString(j, "phase", "", false, s.phase));
  VMLET_RETURN_IF_ERROR(ReadString(j, "ip", "", false, s.ip));
  VMLET_RETURN_IF_ERROR(ReadString(j, "reason", "", false, s.reason));
  VMLET_RETURN_IF_ERROR(ReadString(j, "desiredState", "", false, s.desired_state));
  VMLET_RETURN_IF_ERROR(ReadString(j, "observedGeneration", "", false, s.observed_generation));
  if (auto it = j.find("conditions"); it != j.end()) {
    if (!it->is_array()) return WrongType("", "conditions", "an array");
    for (size_t i = 0; i < it->size(); ++i) {
      StatusOr<Condition> c = ConditionFromJson((*it)[i], "conditions[" + std::to_string(i) + "]");
      if (!c.ok()) return c.status();
      s.conditions.push_back(std::move(c).value());
    }
  }
  VMLET_RETURN_IF_ERROR(ReadInt<uint32_t>(j, "restartCount", "", false, s.restart_count));
  if (auto it = j.find("lastBootDurationSeconds"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) return WrongType("", "lastBootDurationSeconds", "a number");
    s.last_boot_duration_seconds = it->get<double>();
  }
  if (auto it = j.find("vmm"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return WrongType("", "vmm", "an object");
    VmStatus::Vmm vmm;
    VMLET_RETURN_IF_ERROR(ReadString(*it, "driver", "vmm", true, vmm.driver));
    VMLET_RETURN_IF_ERROR(ReadInt<pid_t>(*it, "pid", "vmm", true, vmm.pid, 0));
    VMLET_RETURN_IF_ERROR(
        ReadInt<uint64_t>(*it, "startTimeTicks", "vmm", true, vmm.start_time_ticks));
    s.vmm = std::move(vmm);
  }
  return s;
}

StatusOr<Event> EventFromJson(const json& j) {
  if (!j.is_object()) return Status::InvalidArgument("event: must be a JSON object");
  Event e;
  VMLET_RETURN_IF_ERROR(ReadRequiredTime(j, "time", "", e.time));
  VMLET_RETURN_IF_ERROR(ReadString(j, "type", "", true, e.type));
  VMLET_RETURN_IF_ERROR(ReadString(j, "reason", "", true, e.reason));
  VMLET_RETURN_IF_ERROR(ReadString(j, "message", "", false, e.message));
  return e;
}

}  // namespace vmlet::controller
