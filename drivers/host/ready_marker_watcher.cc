#include "drivers/host/ready_marker_watcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "drivers/host/fd_waiter.h"

namespace vmlet::drivers {
namespace {

// Writes and truncations (IN_MODIFY), unlinks while the VMM still holds the
// file open (IN_ATTRIB: only the link count changes), and the file going away.
// IN_IGNORED comes unasked.
constexpr uint32_t kWatchMask = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;
constexpr uint32_t kGoneMask = IN_MOVE_SELF | IN_DELETE_SELF | IN_IGNORED;

// Where the scan of a file stands.
struct Cursor {
  uint64_t offset = 0;      // bytes of the file consumed
  std::string partial;      // the current line's bytes so far (at most kMaxLineBytes)
  bool discarding = false;  // the current line is too long: skip through its '\n'
};

enum class Outcome {
  kRead,    // read what was new (maybe nothing)
  kGone,    // the path is missing or names another file now
  kFailed,  // an I/O error: the state stays as it was
};

struct ReadResult {
  Outcome outcome = Outcome::kFailed;
  bool truncated = false;  // the file was shorter than the offset
  Cursor cursor;
  std::optional<std::string> ip;  // the first valid marker in the new bytes
};

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsSpace(char c) { return IsBlank(c) || c == '\r' || c == '\v' || c == '\f'; }

bool IsIpAddress(const std::string& token) {
  // inet_pton stops at a NUL, so "1.2.3.4\0junk" would pass as 1.2.3.4.
  if (token.find('\0') != std::string::npos) return false;
  in_addr v4;
  in6_addr v6;
  return ::inet_pton(AF_INET, token.c_str(), &v4) == 1 ||
         ::inet_pton(AF_INET6, token.c_str(), &v6) == 1;
}

// Feeds `data` to the line scanner; returns the IP of the first complete
// marker line in it, and then stops consuming (the rest is not scanned).
std::optional<std::string> Scan(Cursor& cursor, std::string_view data) {
  while (!data.empty()) {
    const size_t newline = data.find('\n');
    const std::string_view piece = data.substr(0, newline);  // all of it without a '\n'
    if (!cursor.discarding) {
      if (cursor.partial.size() + piece.size() > ReadyMarkerWatcher::kMaxLineBytes) {
        cursor.discarding = true;
        cursor.partial.clear();
      } else {
        cursor.partial.append(piece);
      }
    }
    if (newline == std::string_view::npos) return std::nullopt;  // the line goes on
    data.remove_prefix(newline + 1);
    // A CRLF's '\r' is whitespace to ParseMarkerLine.
    std::optional<std::string> ip;
    if (!cursor.discarding) ip = ReadyMarkerWatcher::ParseMarkerLine(cursor.partial);
    cursor.partial.clear();
    cursor.discarding = false;
    if (ip) return ip;
  }
  return std::nullopt;
}

// Reads the bytes of `path` after cursor.offset, up to the size the file has
// now (a guest that keeps writing cannot keep the reader here; what it writes
// meanwhile is the next event's). With `ready`, checks only for truncation and
// moves the offset to the end. Does no locking.
ReadResult ReadNewBytes(const std::string& path, dev_t dev, ino_t ino, Cursor cursor, bool ready) {
  ReadResult result;
  // O_NONBLOCK: should the path now name a FIFO, do not hang in open().
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) {
    if (errno == ENOENT || errno == ENOTDIR) result.outcome = Outcome::kGone;
    return result;
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return result;
  if (st.st_dev != dev || st.st_ino != ino) {
    result.outcome = Outcome::kGone;
    return result;
  }
  const uint64_t end = static_cast<uint64_t>(st.st_size);
  if (end < cursor.offset) {
    result.truncated = true;
    cursor = Cursor{};
    ready = false;
  }
  if (ready) {
    cursor.offset = end;
  } else if (cursor.offset < end) {
    std::vector<char> chunk(std::min<uint64_t>(ReadyMarkerWatcher::kReadChunkBytes, end));
    while (cursor.offset < end && !result.ip) {
      const size_t want = std::min<uint64_t>(chunk.size(), end - cursor.offset);
      const ssize_t n = ::pread(fd.get(), chunk.data(), want, static_cast<off_t>(cursor.offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return result;
      if (n == 0) break;  // truncated meanwhile: the next read sees it
      cursor.offset += static_cast<uint64_t>(n);
      result.ip = Scan(cursor, std::string_view(chunk.data(), static_cast<size_t>(n)));
    }
    if (result.ip) {
      // Later lines are not scanned: skip them unread.
      cursor.offset = std::max(cursor.offset, end);
      cursor.partial.clear();
      cursor.discarding = false;
    }
  }
  result.outcome = Outcome::kRead;
  result.cursor = std::move(cursor);
  return result;
}

api::Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return api::Status::NotFound(std::move(msg));
    case EACCES:
    case EPERM:
      return api::Status::PermissionDenied(std::move(msg));
    case ENOSPC:  // inotify's watch limit
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return api::Status::Unavailable(std::move(msg));
    default:
      return api::Status::Internal(std::move(msg));
  }
}

struct Event {
  int wd;
  uint32_t mask;
};

// Reads every inotify event pending on the (non-blocking) fd.
std::vector<Event> ReadEvents(int inotify_fd) {
  std::vector<Event> events;
  alignas(inotify_event) char buffer[4096];
  for (;;) {
    const ssize_t size = ::read(inotify_fd, buffer, sizeof buffer);
    if (size <= 0) return events;  // EAGAIN: drained
    for (const char* p = buffer; p < buffer + size;) {
      const auto* event = reinterpret_cast<const inotify_event*>(p);
      events.push_back({event->wd, event->mask});
      p += sizeof(inotify_event) + event->len;
    }
  }
}

}  // namespace

struct ReadyMarkerWatcher::File {
  std::string path;
  dev_t dev = 0;  // the file Watch() opened: a path naming another is "gone"
  ino_t ino = 0;
  int wd = -1;            // its inotify watch, or -1
  bool detached = false;  // replaced or removed: never read again
  bool reading = false;   // a CatchUp() reads it now, without mu_
  Cursor cursor;          // changed only by the reader that set `reading`
  std::optional<Ready> ready;
};

ReadyMarkerWatcher::ReadyMarkerWatcher(const api::Clock& clock) : clock_(clock) {}

ReadyMarkerWatcher::~ReadyMarkerWatcher() { Stop(); }

std::optional<std::string> ReadyMarkerWatcher::ParseMarkerLine(std::string_view line) {
  for (size_t at = line.find(kMarker); at != std::string_view::npos;
       at = line.find(kMarker, at + 1)) {
    if (at > 0 && !IsSpace(line[at - 1])) continue;  // "xVMRS_READY"
    size_t pos = at + kMarker.size();
    if (pos == line.size() || !IsBlank(line[pos])) continue;  // "VMRS_READYX", or no token
    while (pos < line.size() && IsBlank(line[pos])) ++pos;
    const size_t token_start = pos;
    while (pos < line.size() && !IsSpace(line[pos])) ++pos;
    std::string token(line.substr(token_start, pos - token_start));
    while (pos < line.size() && IsSpace(line[pos])) ++pos;
    if (token.empty() || pos != line.size()) continue;  // no token, or a second one
    if (IsIpAddress(token)) return token;
  }
  return std::nullopt;
}

api::Status ReadyMarkerWatcher::Start(Listener listener) {
  UniqueFd inotify(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  if (!inotify.valid()) {
    return api::Status::Unavailable(std::string("inotify_init1: ") + std::strerror(errno));
  }
  UniqueFd wake(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake.valid()) {
    return api::Status::Unavailable(std::string("eventfd: ") + std::strerror(errno));
  }

  std::lock_guard lock(mu_);
  if (inotify_.valid()) return api::Status::FailedPrecondition("the ready marker watcher runs");
  inotify_ = std::move(inotify);
  wake_ = std::move(wake);
  stopping_ = false;
  for (auto& [vm_dir, file] : files_) {
    // A file that cannot be watched gets no notifications; Poll() still reads it.
    if (!file->detached) (void)AddWatchLocked(vm_dir, *file);
  }
  thread_ = std::thread([this, inotify_fd = inotify_.get(), wake_fd = wake_.get(),
                         listener = std::move(listener)] { Run(inotify_fd, wake_fd, listener); });
  return api::Status::Ok();
}

void ReadyMarkerWatcher::Stop() {
  std::thread thread;
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;
    WakeLocked();
    thread = std::move(thread_);
  }
  thread.join();

  UniqueFd inotify;  // closed after the lock is released; closing drops every watch
  UniqueFd wake;
  std::lock_guard lock(mu_);
  for (auto& [vm_dir, file] : files_) file->wd = -1;
  by_wd_.clear();
  inotify = std::move(inotify_);
  wake = std::move(wake_);
  stopping_ = false;
}

api::Status ReadyMarkerWatcher::Watch(const std::string& vm_dir, const std::string& serial_log) {
  Unwatch(vm_dir);
  UniqueFd fd(::open(serial_log.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return ErrnoStatus("open " + serial_log, errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("fstat " + serial_log, errno);
  if (!S_ISREG(st.st_mode)) {
    return api::Status::InvalidArgument(serial_log + " is not a regular file");
  }
  fd.Reset();

  auto file = std::make_shared<File>();
  file->path = serial_log;
  file->dev = st.st_dev;
  file->ino = st.st_ino;
  {
    std::lock_guard lock(mu_);
    if (auto it = files_.find(vm_dir); it != files_.end()) {  // a concurrent Watch()
      DropWatchLocked(*it->second, /*kernel_dropped_it=*/false);
      files_.erase(it);
    }
    pending_.erase(vm_dir);
    // The watch comes before the first read, so no write falls between them.
    if (inotify_.valid()) {
      api::Status status = AddWatchLocked(vm_dir, *file);
      if (!status.ok()) return status;
    }
    files_.emplace(vm_dir, file);
  }
  CatchUp(vm_dir);
  return api::Status::Ok();
}

void ReadyMarkerWatcher::Unwatch(const std::string& vm_dir) {
  std::lock_guard lock(mu_);
  auto it = files_.find(vm_dir);
  if (it == files_.end()) return;
  DropWatchLocked(*it->second, /*kernel_dropped_it=*/false);
  files_.erase(it);
  pending_.erase(vm_dir);
}

std::optional<ReadyMarkerWatcher::Ready> ReadyMarkerWatcher::Poll(const std::string& vm_dir) {
  CatchUp(vm_dir);
  std::lock_guard lock(mu_);
  auto it = files_.find(vm_dir);
  if (it == files_.end()) return std::nullopt;
  return it->second->ready;
}

void ReadyMarkerWatcher::CatchUp(const std::string& vm_dir) {
  std::unique_lock lock(mu_);
  std::shared_ptr<File> file;
  for (;;) {
    auto it = files_.find(vm_dir);
    if (it == files_.end()) return;
    file = it->second;
    if (!file->reading) break;
    read_done_.wait(lock);
  }
  if (file->detached) return;
  file->reading = true;
  Cursor cursor = file->cursor;
  const bool ready = file->ready.has_value();
  lock.unlock();

  ReadResult result = ReadNewBytes(file->path, file->dev, file->ino, std::move(cursor), ready);
  const api::Clock::MonotonicTime now = clock_.MonotonicNow();

  lock.lock();
  file->reading = false;
  read_done_.notify_all();
  auto it = files_.find(vm_dir);
  if (it == files_.end() || it->second != file) return;  // unwatched or watched anew meanwhile
  switch (result.outcome) {
    case Outcome::kFailed:
      return;
    case Outcome::kGone:
      DropWatchLocked(*file, /*kernel_dropped_it=*/false);
      file->detached = true;
      return;
    case Outcome::kRead:
      break;
  }
  if (result.truncated) {
    file->ready.reset();
    pending_.erase(vm_dir);
  }
  file->cursor = std::move(result.cursor);
  if (result.ip && !file->ready) {
    file->ready = Ready{std::move(*result.ip), now};
    pending_.insert(vm_dir);
    WakeLocked();
  }
}

// inotify_add_watch / rm_watch run under mu_ so that by_wd_ always matches
// the kernel's watches; they touch no file data.
api::Status ReadyMarkerWatcher::AddWatchLocked(const std::string& vm_dir, File& file) {
  const int wd = ::inotify_add_watch(inotify_.get(), file.path.c_str(), kWatchMask);
  if (wd < 0) return ErrnoStatus("inotify_add_watch " + file.path, errno);
  auto [it, inserted] = by_wd_.emplace(wd, vm_dir);
  if (!inserted && it->second != vm_dir) {
    // The same inode as another VM's file: inotify has one watch for both.
    return api::Status::InvalidArgument(file.path + " is the file watched for " + it->second);
  }
  file.wd = wd;
  return api::Status::Ok();
}

void ReadyMarkerWatcher::DropWatchLocked(File& file, bool kernel_dropped_it) {
  if (file.wd < 0) return;
  if (!kernel_dropped_it && inotify_.valid()) ::inotify_rm_watch(inotify_.get(), file.wd);
  by_wd_.erase(file.wd);
  file.wd = -1;
}

void ReadyMarkerWatcher::WakeLocked() {
  if (!wake_.valid()) return;
  const uint64_t one = 1;
  // Cannot fail short of a counter overflow; the thread wakes either way.
  [[maybe_unused]] ssize_t written = ::write(wake_.get(), &one, sizeof one);
}

void ReadyMarkerWatcher::Run(int inotify_fd, int wake_fd, const Listener& listener) {
  // Files watched before Start() may have grown before their watch was added.
  std::set<std::string> to_read;
  {
    std::lock_guard lock(mu_);
    for (const auto& [vm_dir, file] : files_) to_read.insert(vm_dir);
  }
  for (;;) {
    for (const std::string& vm_dir : to_read) CatchUp(vm_dir);
    to_read.clear();

    std::set<std::string> ready;
    {
      std::lock_guard lock(mu_);
      if (stopping_) return;
      ready.swap(pending_);
    }
    for (const std::string& vm_dir : ready) listener(vm_dir);

    pollfd fds[] = {{inotify_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;  // EBADF/EINVAL: a broken invariant
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] ssize_t got = ::read(wake_fd, &count, sizeof count);
    } else if (fds[0].revents & POLLIN) {
      // A serial console is written a byte at a time (QEMU: one write per
      // byte, some 20,000 per boot). Letting the writes of a few ms gather
      // into one read keeps the watcher from competing with the guest for
      // the CPU; the marker is seen at most kCoalesce later. Stop() still
      // wakes it at once.
      (void)FdWaiter(clock_).WaitReadable(wake_fd, clock_.MonotonicNow() + kCoalesce);
    }
    const std::vector<Event> events = ReadEvents(inotify_fd);

    std::lock_guard lock(mu_);
    if (stopping_) return;
    for (const Event& event : events) {
      if (event.mask & IN_Q_OVERFLOW) {  // events were lost: read everything
        for (const auto& [vm_dir, file] : files_) to_read.insert(vm_dir);
        continue;
      }
      // Events of a watch dropped meanwhile (Unwatch, Watch again) find nothing.
      auto watch = by_wd_.find(event.wd);
      if (watch == by_wd_.end()) continue;
      const std::string vm_dir = watch->second;
      File& file = *files_.at(vm_dir);
      if (event.mask & kGoneMask) {
        DropWatchLocked(file, /*kernel_dropped_it=*/(event.mask & IN_IGNORED) != 0);
        file.detached = true;
        continue;
      }
      to_read.insert(vm_dir);
    }
  }
}

}  // namespace vmlet::drivers
