#include "manifests/manifest_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

namespace vmlet::manifests {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

api::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return api::Status::NotFound(msg);
    case EACCES:
    case EPERM:
      return api::Status::PermissionDenied(msg);
    default:
      return api::Status::Unavailable(msg);
  }
}

ManifestError IoError(const std::string& path, const api::Status& status) {
  return ManifestError{SourceLocation{path, 0, 0}, "-", status.message(), ErrorKind::kIo,
                       std::nullopt};
}

std::string JoinPath(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

class Walker {
 public:
  explicit Walker(FileListing& out) : out_(out) {}

  // `dir` is known (by stat, following links) to be a directory.
  void Walk(const std::string& dir, const struct stat& st) {
    if (!visited_.emplace(st.st_dev, st.st_ino).second) return;  // a symlink loop
    DIR* handle = opendir(dir.c_str());
    if (handle == nullptr) {
      Unreadable(dir, ErrnoStatus(errno, "cannot read directory " + dir));
      return;
    }
    std::vector<std::string> names;
    errno = 0;
    while (struct dirent* entry = readdir(handle)) {
      names.emplace_back(entry->d_name);
    }
    int read_errno = errno;
    closedir(handle);
    if (read_errno != 0) {
      Unreadable(dir, ErrnoStatus(read_errno, "cannot read directory " + dir));
      return;
    }
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      if (name.starts_with('.')) continue;  // also ".", "..", "..data", ".git"
      std::string path = JoinPath(dir, name);
      struct stat child;
      if (stat(path.c_str(), &child) != 0) {
        // A dangling symlink (or a file removed while walking) is not a manifest.
        if (errno == ENOENT) continue;
        if (IsManifestFileName(name)) {
          // Keep it listed: reading it will report why it cannot be read.
          out_.files.push_back(path);
        } else {
          Unreadable(path, ErrnoStatus(errno, "cannot stat " + path));
        }
        continue;
      }
      if (S_ISDIR(child.st_mode)) {
        Walk(path, child);
      } else if (S_ISREG(child.st_mode) && IsManifestFileName(name)) {
        out_.files.push_back(path);
      }
    }
  }

 private:
  void Unreadable(const std::string& path, const api::Status& status) {
    out_.unreadable_dirs.push_back(path);
    out_.errors.push_back(IoError(path, status));
  }

  FileListing& out_;
  std::set<std::pair<dev_t, ino_t>> visited_;
};

}  // namespace

bool IsManifestFileName(std::string_view name) {
  if (name.empty() || name.front() == '.') return false;
  if (name.front() == '#' || name.back() == '~') return false;
  if (EndsWith(name, ".swp") || EndsWith(name, ".tmp")) return false;
  return EndsWith(name, ".yaml") || EndsWith(name, ".yml") || EndsWith(name, ".json");
}

api::StatusOr<FileListing> ListManifestFiles(const std::string& root) {
  struct stat st;
  if (stat(root.c_str(), &st) != 0) return ErrnoStatus(errno, "cannot read " + root);
  FileListing listing;
  if (S_ISREG(st.st_mode)) {
    listing.files.push_back(root);
    return listing;
  }
  if (!S_ISDIR(st.st_mode)) {
    return api::Status::InvalidArgument(root + " is neither a directory nor a regular file");
  }
  // The root itself must be readable: an unreadable root is a source error,
  // never an empty directory.
  if (DIR* handle = opendir(root.c_str())) {
    closedir(handle);
  } else {
    return ErrnoStatus(errno, "cannot read directory " + root);
  }
  Walker(listing).Walk(root, st);
  std::sort(listing.files.begin(), listing.files.end());
  return listing;
}

api::StatusOr<std::string> ReadManifestFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + path);
  std::string content;
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus(err, "cannot read " + path);
    }
    if (n == 0) break;
    content.append(buffer, static_cast<size_t>(n));
    if (content.size() > kMaxManifestBytes) {
      close(fd);
      return api::Status::InvalidArgument(path + " is larger than " +
                                          std::to_string(kMaxManifestBytes) + " bytes");
    }
  }
  close(fd);
  return content;
}

std::vector<ManifestError> RemoveDuplicateVms(std::vector<ManifestVm>& vms) {
  std::map<api::VmKey, std::vector<size_t>> by_key;
  for (size_t i = 0; i < vms.size(); ++i) by_key[vms[i].spec.key()].push_back(i);

  std::vector<ManifestError> errors;
  std::vector<bool> drop(vms.size(), false);
  for (const auto& [key, indexes] : by_key) {
    if (indexes.size() < 2) continue;
    for (size_t i : indexes) {
      std::string others;
      for (size_t j : indexes) {
        if (j == i) continue;
        others += (others.empty() ? "" : ", ") + vms[j].location.ToString();
      }
      errors.push_back(ManifestError{vms[i].location, "metadata.name",
                                     "VirtualMachine " + key.ToString() + " is also defined at " +
                                         others + "; every copy is ignored until only one remains",
                                     ErrorKind::kDuplicateVm, key});
      drop[i] = true;
    }
  }
  size_t kept = 0;
  for (size_t i = 0; i < vms.size(); ++i) {
    if (drop[i]) continue;
    if (kept != i) vms[kept] = std::move(vms[i]);
    ++kept;
  }
  vms.resize(kept);
  std::sort(errors.begin(), errors.end(), [](const ManifestError& a, const ManifestError& b) {
    return std::tie(a.location.file, a.location.line, a.location.column) <
           std::tie(b.location.file, b.location.line, b.location.column);
  });
  return errors;
}

LoadResult LoadManifests(const std::vector<std::string>& paths, const ParseOptions& options) {
  LoadResult result;
  std::set<std::string> seen;
  for (const std::string& path : paths) {
    api::StatusOr<FileListing> listing = ListManifestFiles(path);
    if (!listing.ok()) {
      result.errors.push_back(IoError(path, listing.status()));
      continue;
    }
    for (ManifestError& e : listing->errors) result.errors.push_back(std::move(e));
    for (const std::string& file : listing->files) {
      // A file named twice (itself and through its directory) is read once.
      std::error_code ec;
      std::string canonical = std::filesystem::weakly_canonical(file, ec).string();
      if (!seen.insert(ec ? file : canonical).second) continue;
      api::StatusOr<std::string> content = ReadManifestFile(file);
      if (!content.ok()) {
        result.errors.push_back(IoError(file, content.status()));
        continue;
      }
      ParseResult parsed = ParseManifest(file, *content, options);
      for (ManifestVm& vm : parsed.vms) result.vms.push_back(std::move(vm));
      for (ManifestError& e : parsed.errors) result.errors.push_back(std::move(e));
    }
  }
  for (ManifestError& e : RemoveDuplicateVms(result.vms)) result.errors.push_back(std::move(e));
  return result;
}

}  // namespace vmlet::manifests
