#include "drivers/host/linux_proc_fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

namespace vmlet::drivers {
namespace {

api::Status ErrnoStatus(int err, const std::string& what) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ESRCH:
      return api::Status::NotFound(std::move(msg));
    case EACCES:
    case EPERM:
      return api::Status::PermissionDenied(std::move(msg));
    case EINTR:
    case EAGAIN:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOSYS:
      return api::Status::Unavailable(std::move(msg));
    default:
      return api::Status::Internal(std::move(msg));
  }
}

// Reads all of `name`, relative to `dir_fd` (AT_FDCWD for an absolute path).
api::StatusOr<std::string> ReadAll(int dir_fd, const std::string& name, const std::string& shown) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(errno, "cannot open " + shown);
  std::string content;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, "cannot read " + shown);
    }
    if (n == 0) return content;
    content.append(buf, static_cast<size_t>(n));
  }
}

bool IsSpace(char c) { return c == ' ' || c == '\n'; }

template <typename Int>
bool ParseDecimal(std::string_view text, Int& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

api::StatusOr<ProcessInfo> ParseProcStat(std::string_view stat) {
  auto bad = [](std::string why) {
    return api::Status::InvalidArgument("malformed /proc stat: " + std::move(why));
  };
  // "<pid> (<comm>) <state> <ppid> ...": comm may hold anything but NUL, so
  // only the first " (" and the last ')' delimit it.
  size_t open = stat.find(" (");
  size_t close = stat.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open + 2) {
    return bad("no command name in parentheses");
  }
  ProcessInfo info;
  int64_t pid = 0;
  if (!ParseDecimal(stat.substr(0, open), pid) || pid <= 0 ||
      pid > std::numeric_limits<pid_t>::max()) {
    return bad("pid is not a positive number");
  }
  info.pid = static_cast<pid_t>(pid);

  // Fields from 3 (state) on, separated by spaces; [0] is field 3.
  std::vector<std::string_view> fields;
  std::string_view rest = stat.substr(close + 1);
  if (rest.empty() || rest.front() != ' ') return bad("no fields after the command name");
  while (fields.size() < 20) {
    while (!rest.empty() && IsSpace(rest.front())) rest.remove_prefix(1);
    if (rest.empty()) break;
    size_t end = 0;
    while (end < rest.size() && !IsSpace(rest[end])) ++end;
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end);
  }
  if (fields.size() < 20) {
    return bad("only " + std::to_string(fields.size() + 2) + " fields, field 22 needed");
  }
  if (fields[0].size() != 1) return bad("state is not one character");
  info.state = fields[0][0];
  if (!ParseDecimal(fields[19], info.start_time_ticks)) {
    return bad("start time (field 22) is not a number that fits 64 bits");
  }
  return info;
}

api::StatusOr<std::string> LinuxProcFs::BootId() const {
  const std::string path = root_ + "/sys/kernel/random/boot_id";
  api::StatusOr<std::string> content = ReadAll(AT_FDCWD, path, path);
  if (!content.ok()) return content.status();
  std::string id = std::move(content).value();
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  if (id.empty()) return api::Status::Internal(path + " is empty");
  return id;
}

api::StatusOr<ProcessInfo> LinuxProcFs::ReadProcess(pid_t pid) const {
  if (pid <= 0) return api::Status::NotFound("no process has pid " + std::to_string(pid));
  // Both files are read through one handle on the process's directory: once
  // that process is gone, reads through it fail (ESRCH/ENOENT) instead of
  // reaching a newer process that was given the same pid.
  const std::string dir = root_ + "/" + std::to_string(pid);
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return ErrnoStatus(errno, "no process " + std::to_string(pid));

  api::StatusOr<std::string> stat = ReadAll(dir_fd.get(), "stat", dir + "/stat");
  if (!stat.ok()) return stat.status();
  api::StatusOr<ProcessInfo> info = ParseProcStat(*stat);
  if (!info.ok()) return info.status().WithContext(dir + "/stat");
  if (info->pid != pid) {
    return api::Status::Internal(dir + "/stat names pid " + std::to_string(info->pid));
  }

  api::StatusOr<std::string> cmdline = ReadAll(dir_fd.get(), "cmdline", dir + "/cmdline");
  if (!cmdline.ok()) return cmdline.status();
  // NUL-terminated arguments; the last terminator does not start another one.
  std::string_view rest = *cmdline;
  while (!rest.empty()) {
    size_t end = rest.find('\0');
    if (end == std::string_view::npos) end = rest.size();
    info->cmdline.emplace_back(rest.substr(0, end));
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return info;
}

api::StatusOr<UniqueFd> LinuxProcFs::OpenPidFd(pid_t pid) const {
  if (pid <= 0) return api::Status::NotFound("no process has pid " + std::to_string(pid));
  // pidfd_open(2) has no glibc wrapper before 2.36; it always sets O_CLOEXEC.
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return ErrnoStatus(errno, "pidfd_open(" + std::to_string(pid) + ")");
  return UniqueFd(static_cast<int>(fd));
}

api::StatusOr<std::vector<pid_t>> LinuxProcFs::ListPids() const {
  DIR* dir = ::opendir(root_.c_str());
  if (dir == nullptr) return ErrnoStatus(errno, "cannot list " + root_);
  std::vector<pid_t> pids;
  errno = 0;
  while (const dirent* entry = ::readdir(dir)) {
    int64_t pid = 0;
    if (ParseDecimal(entry->d_name, pid) && pid > 0 && pid <= std::numeric_limits<pid_t>::max()) {
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  const int err = errno;
  ::closedir(dir);
  if (err != 0) return ErrnoStatus(err, "cannot list " + root_);
  return pids;
}

}  // namespace vmlet::drivers
