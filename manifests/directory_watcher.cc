#include "manifests/directory_watcher.h"

#include <dirent.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>

#include "manifests/manifest_files.h"

namespace vmlet::manifests {
namespace {

// Everything that changes what a scan reads; not IN_MODIFY (see the header),
// nor IN_OPEN / IN_ACCESS, which the scans themselves cause.
constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_MOVED_FROM |
                                IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
constexpr int kMaxSettleRounds = 10;

// `path` split into its directory and its last name: "a/b/" -> {"a", "b"},
// "b" -> {".", "b"}, "/b" -> {"/", "b"}.
std::pair<std::string, std::string> SplitPath(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

// Appends `dir` and every directory below it, walked as ListManifestFiles
// walks them, and the directories holding the targets of symlinked manifest
// files, to `out`.
void CollectDirectories(const std::string& dir, std::set<std::pair<dev_t, ino_t>>& seen,
                        std::vector<std::string>& out) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return;
  if (!seen.emplace(st.st_dev, st.st_ino).second) return;  // a symlink loop
  out.push_back(dir);

  DIR* handle = opendir(dir.c_str());
  if (handle == nullptr) return;
  std::vector<std::pair<std::string, unsigned char>> entries;
  while (const dirent* entry = readdir(handle)) {
    if (entry->d_name[0] != '.') entries.emplace_back(entry->d_name, entry->d_type);
  }
  closedir(handle);  // before recursing, so a deep tree does not hold many fds

  for (const auto& [name, type] : entries) {
    const std::string path = dir + "/" + name;
    if (type == DT_DIR) {
      CollectDirectories(path, seen, out);
      continue;
    }
    if (type != DT_LNK && type != DT_UNKNOWN) continue;  // a file, in a watched directory
    struct stat target;
    if (stat(path.c_str(), &target) != 0) continue;
    if (S_ISDIR(target.st_mode)) {
      CollectDirectories(path, seen, out);
    } else if (IsManifestFileName(name)) {
      if (char* resolved = realpath(path.c_str(), nullptr)) {
        out.push_back(SplitPath(resolved).first);
        free(resolved);
      }
    }
  }
}

bool Changed(const SourceUpdate& update, const SourceUpdate& last) {
  return !update.diff.empty() || update.errors != last.errors || update.invalid != last.invalid ||
         update.source_status != last.source_status;
}

}  // namespace

DirectoryWatcher::DirectoryWatcher(ManifestDirectory& directory, Options options, Listener listener)
    : directory_(directory), options_(options), listener_(std::move(listener)) {}

DirectoryWatcher::~DirectoryWatcher() { Stop(); }

api::Status DirectoryWatcher::Start() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kNew) {
      return api::Status::FailedPrecondition("directory watcher already started");
    }
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (inotify_fd_ < 0 || wake_fd_ < 0 || timer_fd_ < 0) {
      const int err = errno;
      CloseFds();
      return api::Status::Unavailable(std::string("cannot set up inotify: ") + std::strerror(err));
    }
    state_ = State::kRunning;
  }

  ScanAndWatch(/*first=*/true);

  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kRunning) {  // Stop() was called during the first scan
    CloseFds();
    return api::Status::FailedPrecondition("directory watcher stopped while starting");
  }
  thread_ = std::thread([this] { Run(); });
  return api::Status::Ok();
}

void DirectoryWatcher::Stop() {
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != State::kRunning) return;
    state_ = State::kStopped;
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    thread = std::move(thread_);
  }
  // Without a thread, Start() is still in its first scan and closes the fds.
  if (!thread.joinable()) return;
  thread.join();
  std::lock_guard<std::mutex> lock(mu_);
  CloseFds();
}

void DirectoryWatcher::RequestRescan() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kRunning) return;
  const uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

bool DirectoryWatcher::Stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ != State::kRunning;
}

void DirectoryWatcher::CloseFds() {
  for (int* fd : {&inotify_fd_, &wake_fd_, &timer_fd_}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

void DirectoryWatcher::Run() {
  // Start() added the watches after its scan: look again for changes made in
  // between.
  bool rescan = true;
  while (!Stopping()) {
    if (!rescan) {
      rescan = WaitForChange();
      continue;
    }
    Settle();
    if (Stopping()) break;
    rescan = ScanAndWatch(/*first=*/false);
  }
}

bool DirectoryWatcher::WaitForChange() {
  pollfd fds[] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}, {timer_fd_, POLLIN, 0}};
  if (poll(fds, 3, -1) < 0) return false;  // EINTR: the caller checks Stopping() and polls again
  bool rescan = false;
  uint64_t count;
  if (fds[0].revents & POLLIN) rescan |= DrainEvents();
  if (fds[1].revents & POLLIN) rescan |= read(wake_fd_, &count, sizeof count) > 0;
  if (fds[2].revents & POLLIN) rescan |= read(timer_fd_, &count, sizeof count) > 0;
  return rescan;
}

void DirectoryWatcher::Settle() {
  const int timeout_ms = static_cast<int>(options_.settle.count());
  for (int round = 0; round < kMaxSettleRounds; ++round) {
    pollfd fds[] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = poll(fds, 2, timeout_ms);
    if (ready == 0) return;  // quiet for `settle`
    if (fds[0].revents & POLLIN) DrainEvents();
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      (void)!read(wake_fd_, &count, sizeof count);
      if (Stopping()) return;
    }
  }
}

bool DirectoryWatcher::DrainEvents() {
  bool rescan = false;
  alignas(inotify_event) char buffer[16 * 1024];
  while (true) {
    const ssize_t size = read(inotify_fd_, buffer, sizeof buffer);
    if (size <= 0) return rescan;  // EAGAIN: drained
    for (const char* p = buffer; p < buffer + size;) {
      const auto* event = reinterpret_cast<const inotify_event*>(p);
      p += sizeof(inotify_event) + event->len;
      if (event->mask & IN_Q_OVERFLOW) {
        rescan = true;
        continue;
      }
      const auto watch = watches_.find(event->wd);
      if (watch == watches_.end()) continue;  // a watch already removed
      if (event->mask & IN_IGNORED) {         // its directory is gone
        watches_.erase(watch);
        rescan = true;
        continue;
      }
      // Only the root's own name counts in the root's parent.
      const std::string& only_name = watch->second;
      if (!only_name.empty() && event->len > 0 && only_name != event->name) continue;
      rescan = true;
    }
  }
}

bool DirectoryWatcher::ScanAndWatch(bool first) {
  SourceUpdate update = directory_.Rescan();
  const bool newly_watched = SyncWatches();

  if (options_.rescan_interval.count() > 0) {
    const auto interval = options_.rescan_interval;
    itimerspec timer{};
    timer.it_value.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(interval).count();
    timer.it_value.tv_nsec =
        std::chrono::duration_cast<std::chrono::nanoseconds>(interval % std::chrono::seconds(1))
            .count();
    timerfd_settime(timer_fd_, 0, &timer, nullptr);
  }

  if (first || Changed(update, last_delivered_)) {
    listener_(update);
    last_delivered_ = std::move(update);
  }
  return newly_watched;
}

bool DirectoryWatcher::SyncWatches() {
  std::map<int, std::string> wanted;
  auto watch = [&](const std::string& path, const std::string& only_name) {
    const int wd = inotify_add_watch(inotify_fd_, path.c_str(), kWatchMask);
    if (wd < 0) return;  // gone, or over the watch limit: the periodic rescan covers it
    const auto [it, inserted] = wanted.emplace(wd, only_name);
    if (!inserted && only_name.empty()) it->second.clear();
  };

  const std::string& root = directory_.root();
  const auto [parent, name] = SplitPath(root);
  if (!name.empty()) watch(parent, name);
  // Watching the root itself also covers a root that is a single file.
  watch(root, "");
  std::set<std::pair<dev_t, ino_t>> seen;
  std::vector<std::string> dirs;
  CollectDirectories(root, seen, dirs);
  for (const std::string& dir : dirs) watch(dir, "");

  bool newly_watched = false;
  for (const auto& [wd, only_name] : watches_) {
    if (!wanted.contains(wd)) inotify_rm_watch(inotify_fd_, wd);
  }
  for (const auto& [wd, only_name] : wanted) {
    if (!watches_.contains(wd)) newly_watched = true;
  }
  watches_ = std::move(wanted);
  return newly_watched;
}

}  // namespace vmlet::manifests
