#include "manifests/directory_source.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "manifests/manifest_files.h"
#include "manifests/spec_json.h"

namespace vmlet::manifests {
namespace {

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

ManifestError FileError(const std::string& path, std::string reason) {
  ManifestError error;
  error.location.file = path;
  error.field = "-";
  error.reason = std::move(reason);
  error.kind = ErrorKind::kIo;
  return error;
}

// True when `path` names something inside directory `dir`.
bool IsUnder(const std::string& path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

// The error FileListing reported for unreadable directory `dir`.
ManifestError DirectoryError(const FileListing& listing, const std::string& dir) {
  for (const ManifestError& error : listing.errors) {
    if (error.location.file == dir) return error;
  }
  return FileError(dir, "directory could not be read");
}

// What changed from `before` to `after`. An entry of `after` equal to that
// of `before` is replaced by it, so that unchanged entries share a pointer.
SnapshotDiff DiffAndShare(const Snapshot& before, Snapshot& after) {
  SnapshotDiff diff;
  for (auto& [key, vm] : after.vms) {
    const auto old = before.vms.find(key);
    if (old == before.vms.end()) {
      diff.added.push_back(key);
    } else if (old->second != vm) {
      if (*old->second == *vm) {
        vm = old->second;
      } else {
        diff.changed.push_back(key);
      }
    }
  }
  for (const auto& [key, vm] : before.vms) {
    if (!after.vms.contains(key)) diff.removed.push_back(key);
  }
  return diff;
}

// What one Rescan() found, gathered step by step.
struct ScanFindings {
  // Every error found, in the order found.
  std::vector<ManifestError> errors;
  // Every valid VM of every file, duplicates included.
  std::vector<std::shared_ptr<const DesiredVm>> candidates;
  // The files that were read (with or without errors).
  std::set<std::string> read_files;
  // Files whose contents are unknown now (listed but unreadable, or under an
  // unreadable directory): their VMs stay as they were.
  std::map<std::string, ManifestError> unknown_files;
  // Files that were read and have errors: their first error.
  std::map<std::string, ManifestError> broken_files;

  void AddUnreadableFile(const std::string& path, std::string reason) {
    errors.push_back(FileError(path, std::move(reason)));
    unknown_files.emplace(path, errors.back());
  }

  void AddReadFile(const std::string& path,
                   const std::vector<std::shared_ptr<const DesiredVm>>& vms,
                   const std::vector<ManifestError>& file_errors) {
    candidates.insert(candidates.end(), vms.begin(), vms.end());
    errors.insert(errors.end(), file_errors.begin(), file_errors.end());
    if (!file_errors.empty()) broken_files.emplace(path, file_errors.front());
    read_files.insert(path);
  }
};

// A previous VM whose file was not read because it is under a directory
// that could not be read has an unknown file too; every VM of an unknown
// file stays a candidate, as it was.
void KeepVmsOfUnknownFiles(const FileListing& listing, const Snapshot& previous,
                           ScanFindings& found) {
  for (const auto& [key, vm] : previous.vms) {
    const std::string& file = vm->source.file;
    if (found.read_files.contains(file) || found.unknown_files.contains(file)) continue;
    for (const std::string& dir : listing.unreadable_dirs) {
      if (IsUnder(file, dir)) {
        found.unknown_files.emplace(file, DirectoryError(listing, dir));
        break;
      }
    }
  }
  for (const auto& [key, vm] : previous.vms) {
    if (found.unknown_files.contains(vm->source.file)) found.candidates.push_back(vm);
  }
}

// Rejects every copy of a VM defined more than once, appending the errors
// that say so; returns how many candidates define each VM.
std::map<api::VmKey, int> RejectDuplicates(ScanFindings& found) {
  // RemoveDuplicateVms writes the errors; only the few duplicated VMs are
  // handed to it.
  std::map<api::VmKey, int> copies;
  for (const auto& vm : found.candidates) ++copies[vm->spec.key()];
  std::vector<ManifestVm> duplicates;
  for (const auto& vm : found.candidates) {
    if (copies[vm->spec.key()] > 1) duplicates.push_back({vm->spec, vm->source});
  }
  if (!duplicates.empty()) {
    std::vector<ManifestError> duplicate_errors = RemoveDuplicateVms(duplicates);
    found.errors.insert(found.errors.end(), duplicate_errors.begin(), duplicate_errors.end());
  }
  return copies;
}

// The first error naming each VM.
std::map<api::VmKey, ManifestError> ErrorsByVm(const std::vector<ManifestError>& errors) {
  std::map<api::VmKey, ManifestError> invalid;
  for (const ManifestError& error : errors) {
    if (error.key) invalid.emplace(*error.key, error);
  }
  return invalid;
}

// The candidates defined once; a VM of an unknown file is also marked
// invalid (with its file's error) unless an error names it already.
std::shared_ptr<Snapshot> NextSnapshot(const ScanFindings& found,
                                       const std::map<api::VmKey, int>& copies,
                                       std::map<api::VmKey, ManifestError>& invalid) {
  auto next = std::make_shared<Snapshot>();
  for (const auto& vm : found.candidates) {
    const api::VmKey key = vm->spec.key();
    if (copies.at(key) > 1) continue;  // in `invalid` through its duplicate error
    if (found.unknown_files.contains(vm->source.file)) {
      invalid.emplace(key, found.unknown_files.at(vm->source.file));
    }
    next->vms.emplace(key, vm);
  }
  return next;
}

// Last known good: a VM that left the snapshot keeps its previous spec when
// an error names it or its file is broken (it may be the broken document).
void KeepLastKnownGood(const Snapshot& previous,
                       const std::map<std::string, ManifestError>& broken_files,
                       std::map<api::VmKey, ManifestError>& invalid, Snapshot& next) {
  for (const auto& [key, vm] : previous.vms) {
    if (next.vms.contains(key)) continue;
    const auto broken = broken_files.find(vm->source.file);
    if (broken != broken_files.end()) invalid.emplace(key, broken->second);
    if (invalid.contains(key)) next.vms.emplace(key, vm);
  }
}

}  // namespace

bool ManifestDirectory::FileStat::operator==(const FileStat& other) const {
  return dev == other.dev && ino == other.ino && size == other.size &&
         SameTime(mtime, other.mtime) && SameTime(ctime, other.ctime);
}

ManifestDirectory::ManifestDirectory(std::string root, ParseOptions options)
    : root_(std::move(root)),
      options_(std::move(options)),
      snapshot_(std::make_shared<const Snapshot>()) {}

std::shared_ptr<const Snapshot> ManifestDirectory::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

api::StatusOr<ManifestDirectory::ParsedFile> ManifestDirectory::Parse(
    const std::string& path, const Snapshot& previous) const {
  // stat() before reading: if the file changes in between, the next scan
  // sees a newer stat than the one cached and reads it again.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    const std::string why = "cannot stat " + path + ": " + std::strerror(errno);
    return errno == ENOENT ? api::Status::NotFound(why) : api::Status::Unavailable(why);
  }
  ParsedFile parsed;
  parsed.stat = {st.st_dev, st.st_ino, st.st_size, st.st_mtim, st.st_ctim};
  if (const auto cached = files_.find(path);
      cached != files_.end() && cached->second.stat == parsed.stat) {
    return cached->second;
  }

  api::StatusOr<std::string> content = ReadManifestFile(path);
  if (!content.ok()) return content.status();
  ParseResult result = ParseManifest(path, *content, options_);
  parsed.errors = std::move(result.errors);
  for (ManifestVm& vm : result.vms) {
    // Keep the previous entry when nothing changed, so that unchanged VMs
    // keep their pointer (and their hash is not computed again).
    const auto old = previous.vms.find(vm.spec.key());
    if (old != previous.vms.end() && old->second->spec == vm.spec &&
        old->second->source == vm.location) {
      parsed.vms.push_back(old->second);
      continue;
    }
    auto desired = std::make_shared<DesiredVm>();
    desired->spec_hash = BootHash(vm.spec);
    desired->spec = std::move(vm.spec);
    desired->source = std::move(vm.location);
    parsed.vms.push_back(std::move(desired));
  }
  return parsed;
}

SourceUpdate ManifestDirectory::Rescan() {
  const std::shared_ptr<const Snapshot> previous = snapshot();
  SourceUpdate update;

  api::StatusOr<FileListing> listing = ListManifestFiles(root_);
  if (!listing.ok()) {
    update.snapshot = previous;
    update.errors = last_errors_;
    update.invalid = last_invalid_;
    update.source_status = listing.status();
    return update;
  }

  ScanFindings found;
  found.errors = listing->errors;
  std::map<std::string, ParsedFile> files;
  for (const std::string& path : listing->files) {
    if (files.contains(path)) continue;
    api::StatusOr<ParsedFile> parsed = Parse(path, *previous);
    // Removed between the listing and the read (`rm *.yaml`, a git checkout):
    // gone, like a file the listing did not show, not a broken manifest.
    if (!parsed.ok() && parsed.status().IsNotFound()) continue;
    if (!parsed.ok()) {
      found.AddUnreadableFile(path, parsed.status().message());
      continue;
    }
    found.AddReadFile(path, parsed->vms, parsed->errors);
    files.emplace(path, std::move(parsed).value());
  }
  KeepVmsOfUnknownFiles(*listing, *previous, found);
  const std::map<api::VmKey, int> copies = RejectDuplicates(found);
  std::map<api::VmKey, ManifestError> invalid = ErrorsByVm(found.errors);
  std::shared_ptr<Snapshot> next = NextSnapshot(found, copies, invalid);
  KeepLastKnownGood(*previous, found.broken_files, invalid, *next);

  update.diff = DiffAndShare(*previous, *next);
  files_ = std::move(files);
  last_errors_ = found.errors;
  last_invalid_ = invalid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = next;
  }
  update.snapshot = std::move(next);
  update.errors = std::move(found.errors);
  update.invalid = std::move(invalid);
  return update;
}

}  // namespace vmlet::manifests
