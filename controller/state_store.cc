#include "controller/state_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "api/validation.h"
#include "controller/file_io.h"
#include "drivers/unique_fd.h"

namespace vmlet::controller {
namespace {

using api::Status;
using api::StatusOr;
using drivers::UniqueFd;
using nlohmann::json;

constexpr char kRecordFile[] = "record.json";
constexpr char kStatusFile[] = "status.json";
constexpr char kEventsFile[] = "events.jsonl";
// More quarantined records than this for one second means something is
// rewriting record.json in a loop; stop rather than fill the directory.
constexpr int kMaxQuarantineSuffix = 1000;

Status CheckKey(const api::VmKey& key) {
  if (Status s = api::ValidateName(key.ns); !s.ok()) {
    return Status::InvalidArgument("VM namespace \"" + key.ns + "\": " + s.message());
  }
  if (Status s = api::ValidateName(key.name); !s.ok()) {
    return Status::InvalidArgument("VM name \"" + key.name + "\": " + s.message());
  }
  return Status::Ok();
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
// StateStore.

StateStore::StateStore(std::string state_dir, const api::Clock& clock, Options options)
    : state_dir_(std::move(state_dir)), clock_(clock), options_(options) {
  // "/var/lib/vmlet/" would make Init() create the state dir as a parent.
  while (state_dir_.size() > 1 && state_dir_.back() == '/') state_dir_.pop_back();
}

Status StateStore::Init() {
  std::error_code ec;
  const std::string parent = ParentDir(state_dir_);
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
  return controller::WriteFileAtomically(dir, name, content, sync, [this] {
    return temp_counter_.fetch_add(1, std::memory_order_relaxed);
  });
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

StatusOr<StateStore::StoredVm> StateStore::LoadVm(const api::VmKey& key, Read read) {
  VMLET_RETURN_IF_ERROR(CheckKey(key));
  StoredVm stored;
  stored.dir_exists = VmDirExists(key);
  if (read == Read::kDirectory) return stored;
  StatusOr<LoadedRecord> record = LoadRecord(key);
  if (!record.ok()) return record.status();
  stored.record = std::move(record).value();
  stored.status = LoadStatus(key);
  return stored;
}

StateStore::CommitResult StateStore::Commit(const api::VmKey& key, const VmChanges& changes) {
  CommitResult result;
  if (changes.ensure_dir) result.dir = EnsureVmDir(key);
  if (changes.record) result.record = SaveRecord(key, *changes.record, changes.record_durability);
  if (!changes.events.empty() && VmDirExists(key)) {
    for (const Event& event : changes.events) {
      if (Status s = AppendEvent(key, event); !s.ok() && result.events.ok()) result.events = s;
    }
  }
  if (changes.status)
    result.status = result.dir.ok() ? SaveStatus(key, *changes.status) : result.dir;
  return result;
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
