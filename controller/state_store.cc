#include "controller/state_store.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>

#include "api/validation.h"
#include "drivers/unique_fd.h"

namespace vmlet::controller {
namespace {

using api::Status;
using api::StatusOr;
using drivers::UniqueFd;
using nlohmann::json;

constexpr int64_t kRecordVersion = 1;
constexpr char kRecordFile[] = "record.json";
constexpr char kStatusFile[] = "status.json";
constexpr char kEventsFile[] = "events.jsonl";
// More quarantined records than this for one second means something is
// rewriting record.json in a loop; stop rather than fill the directory.
constexpr int kMaxQuarantineSuffix = 1000;

// ---------------------------------------------------------------------------
// Errors.

Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
      return Status::NotFound(std::move(msg));
    case EACCES:
    case EPERM:
      return Status::PermissionDenied(std::move(msg));
    default:
      return Status::Unavailable(std::move(msg));
  }
}

Status ErrorCodeStatus(const std::error_code& ec, const std::string& what) {
  if (ec.category() == std::system_category() || ec.category() == std::generic_category()) {
    return ErrnoStatus(ec.value(), what);
  }
  return Status::Unavailable(what + ": " + ec.message());
}

Status CheckKey(const api::VmKey& key) {
  if (Status s = api::ValidateName(key.ns); !s.ok()) {
    return Status::InvalidArgument("VM namespace \"" + key.ns + "\": " + s.message());
  }
  if (Status s = api::ValidateName(key.name); !s.ok()) {
    return Status::InvalidArgument("VM name \"" + key.name + "\": " + s.message());
  }
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Files.

// The whole file; NotFound when it does not exist.
StatusOr<std::string> ReadFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "cannot open " + path);
  std::string content;
  char buf[16384];
  while (true) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read " + path);
    }
    if (n == 0) break;
    content.append(buf, static_cast<size_t>(n));
  }
  return content;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot write " + path);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

Status SyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "cannot open directory " + dir);
  if (::fsync(fd.get()) != 0) return ErrnoStatus(errno, "cannot fsync directory " + dir);
  return Status::Ok();
}

std::string Parent(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

// mkdir(path, mode) with exactly `mode` (the umask does not apply). Sets
// `created` when it made the directory; OK when a directory is already there.
Status MakeDir(const std::string& path, mode_t mode, bool& created) {
  created = false;
  if (::mkdir(path.c_str(), mode) == 0) {
    created = true;
    if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, "cannot chmod " + path);
    return Status::Ok();
  }
  if (errno != EEXIST) return ErrnoStatus(errno, "cannot create directory " + path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "cannot stat " + path);
  if (!S_ISDIR(st.st_mode)) {
    return Status::FailedPrecondition(path + " exists but is not a directory");
  }
  return Status::Ok();
}

// chmod(path, mode) unless it has that mode already.
Status Chmod(const std::string& path, mode_t mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus(errno, "cannot stat " + path);
  if ((st.st_mode & 07777) == mode) return Status::Ok();
  if (::chmod(path.c_str(), mode) != 0) return ErrnoStatus(errno, "cannot chmod " + path);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Times.

struct CivilTime {
  int year;
  unsigned month, day, hour, minute, second, millis;
};

CivilTime ToCivil(WallTime time) {
  using namespace std::chrono;
  const auto ms = floor<milliseconds>(time);
  const auto day = floor<days>(ms);
  const year_month_day ymd(day);
  const hh_mm_ss hms(ms - day);
  return {static_cast<int>(ymd.year()),
          static_cast<unsigned>(ymd.month()),
          static_cast<unsigned>(ymd.day()),
          static_cast<unsigned>(hms.hours().count()),
          static_cast<unsigned>(hms.minutes().count()),
          static_cast<unsigned>(hms.seconds().count()),
          static_cast<unsigned>(hms.subseconds().count())};
}

// "20261128T030405Z", for file names.
std::string FormatCompactTime(WallTime time) {
  const CivilTime c = ToCivil(time);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d%02u%02uT%02u%02u%02uZ", c.year, c.month, c.day, c.hour,
                c.minute, c.second);
  return buf;
}

// Reads exactly `width` decimal digits at `pos`.
bool ReadDigits(std::string_view text, size_t& pos, size_t width, int& out) {
  if (pos + width > text.size()) return false;
  int value = 0;
  for (size_t i = 0; i < width; ++i) {
    const char c = text[pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  pos += width;
  out = value;
  return true;
}

bool Expect(std::string_view text, size_t& pos, char c) {
  if (pos >= text.size() || text[pos] != c) return false;
  ++pos;
  return true;
}

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

// Returns the Status of `expr` from the enclosing function unless it is OK.
#define VMLET_RETURN_IF_ERROR(expr)     \
  do {                                  \
    if (Status s_ = (expr); !s_.ok()) { \
      return s_;                        \
    }                                   \
  } while (false)

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

// The lines of `content` that end in '\n' and are not empty.
std::vector<std::string_view> CompleteLines(std::string_view content) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (true) {
    const size_t end = content.find('\n', start);
    if (end == std::string_view::npos) break;
    if (end > start) lines.push_back(content.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

}  // namespace

// ---------------------------------------------------------------------------
// Conditions.

void SetCondition(VmStatus& status, Condition c) {
  for (Condition& existing : status.conditions) {
    if (existing.type != c.type) continue;
    if (existing.status == c.status) c.last_transition_time = existing.last_transition_time;
    existing = std::move(c);
    return;
  }
  status.conditions.push_back(std::move(c));
}

const Condition* FindCondition(const VmStatus& status, std::string_view type) {
  for (const Condition& c : status.conditions) {
    if (c.type == type) return &c;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------
// Times.

std::string FormatTime(WallTime time) {
  const CivilTime c = ToCivil(time);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02u-%02uT%02u:%02u:%02u.%03uZ", c.year, c.month, c.day,
                c.hour, c.minute, c.second, c.millis);
  return buf;
}

StatusOr<WallTime> ParseTime(std::string_view text) {
  using namespace std::chrono;
  auto bad = [&] {
    return Status::InvalidArgument("\"" + std::string(text) +
                                   "\" is not an RFC 3339 time (2026-11-28T03:04:05.123Z)");
  };
  size_t pos = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (!ReadDigits(text, pos, 4, year) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, month) || !Expect(text, pos, '-') ||
      !ReadDigits(text, pos, 2, day)) {
    return bad();
  }
  if (pos >= text.size() || (text[pos] != 'T' && text[pos] != 't')) return bad();
  ++pos;
  if (!ReadDigits(text, pos, 2, hour) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, minute) || !Expect(text, pos, ':') ||
      !ReadDigits(text, pos, 2, second)) {
    return bad();
  }
  nanoseconds fraction{0};
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t nanos = 0;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      if (++digits > 9) return bad();
      nanos = nanos * 10 + (text[pos] - '0');
      ++pos;
    }
    if (digits == 0) return bad();
    for (size_t i = digits; i < 9; ++i) nanos *= 10;
    fraction = nanoseconds(nanos);
  }
  minutes offset{0};
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const bool negative = text[pos] == '-';
    ++pos;
    int offset_hours = 0, offset_minutes = 0;
    if (!ReadDigits(text, pos, 2, offset_hours) || !Expect(text, pos, ':') ||
        !ReadDigits(text, pos, 2, offset_minutes) || offset_hours > 23 || offset_minutes > 59) {
      return bad();
    }
    offset = hours(offset_hours) + minutes(offset_minutes);
    if (negative) offset = -offset;
  } else {
    return bad();
  }
  if (pos != text.size()) return bad();

  const year_month_day ymd{std::chrono::year(year),
                           std::chrono::month(static_cast<unsigned>(month)),
                           std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok() || hour > 23 || minute > 59 || second > 59) return bad();
  // In whole seconds first: WallTime counts nanoseconds in 64 bits, which
  // spans only the years 1678 to 2261, and must not overflow.
  const sys_seconds utc = sys_days(ymd) + hours(hour) + minutes(minute) + seconds(second) - offset;
  constexpr seconds kEarliest = ceil<seconds>(WallTime::min().time_since_epoch()) + seconds(1);
  constexpr seconds kLatest = floor<seconds>(WallTime::max().time_since_epoch()) - seconds(1);
  if (utc.time_since_epoch() < kEarliest || utc.time_since_epoch() > kLatest) {
    return Status::InvalidArgument("\"" + std::string(text) + "\" is out of range");
  }
  return time_point_cast<WallTime::duration>(utc) + duration_cast<WallTime::duration>(fraction);
}

// ---------------------------------------------------------------------------
// JSON.

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
  j["lastExitPhase"] = record.last_exit_phase;
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
  VMLET_RETURN_IF_ERROR(ReadString(j, "lastExitPhase", "", false, r.last_exit_phase));
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

// ---------------------------------------------------------------------------
// StateStore.

StateStore::StateStore(std::string state_dir, const api::Clock& clock, Options options)
    : state_dir_(std::move(state_dir)), clock_(clock), options_(options) {
  // "/var/lib/vmlet/" would make Init() create the state dir as a parent.
  while (state_dir_.size() > 1 && state_dir_.back() == '/') state_dir_.pop_back();
}

Status StateStore::Init() {
  std::error_code ec;
  const std::string parent = Parent(state_dir_);
  if (!parent.empty()) {
    std::filesystem::create_directories(parent, ec);
    if (ec) return ErrorCodeStatus(ec, "cannot create directory " + parent);
  }
  bool created = false;
  VMLET_RETURN_IF_ERROR(MakeDir(state_dir_, 0711, created));
  if (created && !parent.empty()) VMLET_RETURN_IF_ERROR(SyncDir(parent));
  VMLET_RETURN_IF_ERROR(MakeDir(state_dir_ + "/vms", options_.vmm_group ? 0711 : 0700, created));
  if (created) VMLET_RETURN_IF_ERROR(SyncDir(state_dir_));
  // Directories made by an earlier vmlet, with or without --vmm-user, get
  // the modes of this one.
  VMLET_RETURN_IF_ERROR(Chmod(state_dir_, 0711));
  VMLET_RETURN_IF_ERROR(Chmod(state_dir_ + "/vms", options_.vmm_group ? 0711 : 0700));
  return Status::Ok();
}

std::string StateStore::VmDir(const api::VmKey& key) const {
  return state_dir_ + "/vms/" + key.ns + "/" + key.name;
}

bool StateStore::VmDirExists(const api::VmKey& key) const {
  if (!CheckKey(key).ok()) return false;
  struct stat st {};
  return ::stat(VmDir(key).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status StateStore::EnsureVmDir(const api::VmKey& key) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  const std::string vms = state_dir_ + "/vms";
  const std::string ns_dir = vms + "/" + key.ns;
  bool created = false;
  const mode_t ns_mode = options_.vmm_group ? 0711 : 0700;
  VMLET_RETURN_IF_ERROR(MakeDir(ns_dir, ns_mode, created));
  if (created) VMLET_RETURN_IF_ERROR(SyncDir(vms));
  if (!created) VMLET_RETURN_IF_ERROR(Chmod(ns_dir, ns_mode));
  const std::string vm_dir = VmDir(key);
  const mode_t vm_mode = options_.vmm_group ? 01770 : 0700;
  VMLET_RETURN_IF_ERROR(MakeDir(vm_dir, vm_mode, created));
  if (created) VMLET_RETURN_IF_ERROR(SyncDir(ns_dir));
  if (options_.vmm_group) {
    if (::chown(vm_dir.c_str(), static_cast<uid_t>(-1), *options_.vmm_group) != 0) {
      return ErrnoStatus(errno, "cannot give " + vm_dir + " to the VMMs' group");
    }
  }
  if (!created) VMLET_RETURN_IF_ERROR(Chmod(vm_dir, vm_mode));
  return Status::Ok();
}

Status StateStore::WriteFileAtomically(const std::string& dir, const std::string& name,
                                       std::string_view content, bool sync) {
  const std::string target = dir + "/" + name;
  std::string temp;
  UniqueFd fd;
  // A name can only be taken by a temporary file that an earlier process
  // with the same pid left behind in a crash; the next counter value is free.
  for (int attempt = 0; attempt < 100 && !fd.valid(); ++attempt) {
    temp = dir + "/." + name + ".tmp-" + std::to_string(::getpid()) + "-" +
           std::to_string(temp_counter_.fetch_add(1, std::memory_order_relaxed));
    fd.Reset(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid() && errno != EEXIST) return ErrnoStatus(errno, "cannot create " + temp);
  }
  if (!fd.valid()) return ErrnoStatus(EEXIST, "cannot create a temporary file for " + target);

  auto fail = [&](Status status) {
    fd.Reset();
    ::unlink(temp.c_str());
    return status;
  };
  if (Status s = WriteAll(fd.get(), content, temp); !s.ok()) return fail(s);
  if (sync && ::fsync(fd.get()) != 0) return fail(ErrnoStatus(errno, "cannot fsync " + temp));
  // close() can report a failed write-back (NFS); the file is not good then.
  if (::close(fd.Release()) != 0) return fail(ErrnoStatus(errno, "cannot close " + temp));
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    return fail(ErrnoStatus(errno, "cannot rename " + temp + " to " + target));
  }
  if (sync) return SyncDir(dir);
  return Status::Ok();
}

StatusOr<StateStore::LoadedRecord> StateStore::LoadRecord(const api::VmKey& key) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  const std::string dir = VmDir(key);
  const std::string path = dir + "/" + kRecordFile;
  StatusOr<std::string> content = ReadFile(path);
  if (!content.ok()) {
    if (content.status().IsNotFound()) return LoadedRecord{};
    return content.status();
  }

  std::string problem;
  if (content->empty()) {
    problem = "empty file";
  } else {
    try {
      const json j = json::parse(*content);
      StatusOr<VmRecord> record = VmRecordFromJson(j);
      if (record.ok()) {
        LoadedRecord loaded;
        loaded.record = std::move(record).value();
        return loaded;
      }
      problem = record.status().message();
    } catch (const json::exception& e) {
      problem = std::string("not valid JSON: ") + e.what();
    }
  }

  auto quarantined = [&](std::string to) {
    // Best effort: if the move is lost in a crash, the next start finds the
    // same corrupt file and moves it again.
    (void)SyncDir(dir);
    LoadedRecord loaded;
    loaded.quarantined_to = std::move(to);
    loaded.problem = problem;
    return loaded;
  };
  // Keep the bytes for a post-mortem, out of the way of the next record.
  const std::string base = path + ".corrupt-" + FormatCompactTime(clock_.WallNow());
  for (int suffix = 0; suffix <= kMaxQuarantineSuffix; ++suffix) {
    const std::string to = suffix == 0 ? base : base + "-" + std::to_string(suffix);
    if (::renameat2(AT_FDCWD, path.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) {
      return quarantined(to);
    }
    if (errno == EEXIST) continue;
    if (errno != EINVAL && errno != ENOSYS) {
      return ErrnoStatus(errno, "cannot move corrupt " + path + " (" + problem + ") aside");
    }
    // The file system cannot refuse to replace; one worker per key means
    // nobody creates `to` between the check and the rename.
    struct stat st {};
    if (::lstat(to.c_str(), &st) == 0) continue;
    if (::rename(path.c_str(), to.c_str()) != 0) {
      return ErrnoStatus(errno, "cannot move corrupt " + path + " (" + problem + ") aside");
    }
    return quarantined(to);
  }
  return Status::Internal("cannot move corrupt " + path + " aside: too many quarantined records");
}

Status StateStore::SaveRecord(const api::VmKey& key, const VmRecord& record,
                              Durability durability) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  std::string text;
  try {
    // Strict UTF-8: a path rewritten on the way to disk would no longer
    // match the VMM's command line.
    text = ToJson(record).dump(2) + "\n";
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("record of ") + key.ToString() +
                                   " cannot be written as JSON: " + e.what());
  }
  return WriteFileAtomically(VmDir(key), kRecordFile, text,
                             /*sync=*/durability == Durability::kDurable);
}

std::optional<VmStatus> StateStore::LoadStatus(const api::VmKey& key) {
  if (!CheckKey(key).ok()) return std::nullopt;
  StatusOr<std::string> content = ReadFile(VmDir(key) + "/" + kStatusFile);
  if (!content.ok()) return std::nullopt;
  const json j = json::parse(*content, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  StatusOr<VmStatus> status = VmStatusFromJson(j);
  if (!status.ok()) return std::nullopt;
  return std::move(status).value();
}

Status StateStore::SaveStatus(const api::VmKey& key, const VmStatus& status) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  const std::string text =
      ToJson(status).dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  return WriteFileAtomically(VmDir(key), kStatusFile, text, options_.sync_status);
}

Status StateStore::AppendEvent(const api::VmKey& key, const Event& event) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  const std::string dir = VmDir(key);
  const std::string path = dir + "/" + kEventsFile;

  std::optional<size_t> known_lines;
  {
    std::lock_guard lock(mu_);
    if (auto it = event_lines_.find(key); it != event_lines_.end()) known_lines = it->second;
  }
  std::string line;
  size_t lines = 0;
  if (known_lines) {
    lines = *known_lines;
  } else {
    // First append for this VM in this process: count once, and end a line
    // torn by a crash so that the new one is not glued to it.
    StatusOr<std::string> content = ReadFile(path);
    if (!content.ok() && !content.status().IsNotFound()) return content.status();
    if (content.ok()) {
      lines = static_cast<size_t>(std::count(content->begin(), content->end(), '\n'));
      if (!content->empty() && content->back() != '\n') {
        line = "\n";
        ++lines;
      }
    }
  }
  line += ToJson(event).dump(-1, ' ', false, json::error_handler_t::replace);
  line += '\n';

  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(errno, "cannot open " + path);
  // One write() so that a reader never sees half a line from a healthy
  // write; a short write (disk full) leaves a torn line that readers skip.
  ssize_t n;
  do {
    n = ::write(fd.get(), line.data(), line.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoStatus(errno, "cannot append to " + path);
  ++lines;
  if (static_cast<size_t>(n) != line.size()) {
    std::lock_guard lock(mu_);
    event_lines_.erase(key);  // recount, and end the torn line, next time
    return Status::Unavailable("short write appending to " + path);
  }
  fd.Reset();

  Status trimmed;
  if (lines > 2 * max_events()) {
    StatusOr<size_t> kept = TrimEvents(dir);
    if (kept.ok()) {
      lines = *kept;
    } else {
      trimmed = kept.status().WithContext("event appended, but trimming failed");
    }
  }
  std::lock_guard lock(mu_);
  event_lines_[key] = lines;
  return trimmed;
}

StatusOr<size_t> StateStore::TrimEvents(const std::string& dir) {
  StatusOr<std::string> content = ReadFile(dir + "/" + kEventsFile);
  if (!content.ok()) return content.status();
  std::vector<std::string_view> lines = CompleteLines(*content);
  const size_t keep = std::min(lines.size(), max_events());
  std::string text;
  for (size_t i = lines.size() - keep; i < lines.size(); ++i) {
    text.append(lines[i]);
    text += '\n';
  }
  // Synced: trimming is rare, and a crash must not leave an empty file.
  VMLET_RETURN_IF_ERROR(WriteFileAtomically(dir, kEventsFile, text, /*sync=*/true));
  return keep;
}

std::vector<Event> StateStore::RecentEvents(const api::VmKey& key, size_t max) const {
  std::vector<Event> events;
  if (max == 0 || !CheckKey(key).ok()) return events;
  StatusOr<std::string> content = ReadFile(VmDir(key) + "/" + kEventsFile);
  if (!content.ok()) return events;
  const std::vector<std::string_view> lines = CompleteLines(*content);
  for (auto it = lines.rbegin(); it != lines.rend() && events.size() < max; ++it) {
    const json j = json::parse(*it, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) continue;
    StatusOr<Event> event = EventFromJson(j);
    if (event.ok()) events.push_back(std::move(event).value());
  }
  std::reverse(events.begin(), events.end());
  return events;
}

Status StateStore::RemoveVmDir(const api::VmKey& key) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  {
    std::lock_guard lock(mu_);
    event_lines_.erase(key);
  }
  const std::string dir = VmDir(key);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) return ErrorCodeStatus(ec, "cannot remove " + dir);
  const std::string ns_dir = state_dir_ + "/vms/" + key.ns;
  if (::rmdir(ns_dir.c_str()) != 0 && errno != ENOTEMPTY && errno != EEXIST && errno != ENOENT) {
    return ErrnoStatus(errno, "cannot remove " + ns_dir);
  }
  return Status::Ok();
}

StatusOr<std::vector<api::VmKey>> StateStore::ListVms() const {
  namespace fs = std::filesystem;
  std::vector<api::VmKey> keys;
  const fs::path vms = fs::path(state_dir_) / "vms";

  // The subdirectories of `dir` with valid names; a missing `dir` has none.
  auto list_dirs = [](const fs::path& dir) -> StatusOr<std::vector<std::string>> {
    std::vector<std::string> names;
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) return names;
      return ErrorCodeStatus(ec, "cannot read directory " + dir.string());
    }
    for (; it != fs::directory_iterator(); it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::error_code type_ec;
      // Symlinks are not followed: everything under vms is vmlet's own.
      if (api::ValidateName(name).ok() && it->is_directory(type_ec) && !it->is_symlink(type_ec)) {
        names.push_back(name);
      }
    }
    if (ec) return ErrorCodeStatus(ec, "cannot read directory " + dir.string());
    return names;
  };

  StatusOr<std::vector<std::string>> namespaces = list_dirs(vms);
  if (!namespaces.ok()) return namespaces.status();
  for (const std::string& ns : *namespaces) {
    StatusOr<std::vector<std::string>> names = list_dirs(vms / ns);
    if (!names.ok()) return names.status();
    for (const std::string& name : *names) keys.push_back({ns, name});
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace vmlet::controller
