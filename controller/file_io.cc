#include "controller/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "drivers/unique_fd.h"

namespace vmlet::controller {

using api::Status;
using api::StatusOr;
using drivers::UniqueFd;

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

std::string ParentDir(const std::string& path) {
  return std::filesystem::path(path).parent_path().string();
}

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

Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           std::string_view content, bool sync,
                           const std::function<uint64_t()>& unique) {
  const std::string target = dir + "/" + name;
  std::string temp;
  UniqueFd fd;
  // A name can only be taken by a temporary file that an earlier process
  // with the same pid left behind in a crash; the next counter value is free.
  for (int attempt = 0; attempt < 100 && !fd.valid(); ++attempt) {
    temp =
        dir + "/." + name + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(unique());
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

}  // namespace vmlet::controller
