#include "drivers/vmm_identity.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>
#include <vector>

namespace vmlet::drivers {
namespace {

constexpr uint64_t kWakeId = 0;

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

bool CommandLineNamesVmDir(const std::vector<std::string>& cmdline, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir.empty()) return false;
  for (const std::string& arg : cmdline) {
    for (size_t at = arg.find(dir); at != std::string::npos; at = arg.find(dir, at + 1)) {
      const size_t end = at + dir.size();
      const bool starts = at == 0 || !(IsNameChar(arg[at - 1]) || arg[at - 1] == '/');
      const bool ends = end == arg.size() || !IsNameChar(arg[end]);
      if (starts && ends) return true;
    }
  }
  return false;
}

namespace {

// True when the pidfd's process has exited (a pidfd turns readable then).
bool HasExited(int pidfd) {
  pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
  int n;
  do {
    n = ::poll(&pfd, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0 && (pfd.revents & (POLLIN | POLLHUP)) != 0;
}

}  // namespace

struct VmmIdentity::Held {
  VmmHandle handle;
  UniqueFd pidfd;         // invalid when the ProcFs has no real processes
  uint64_t watch_id = 0;  // key of watched_ while in the epoll set, else 0
};

VmmIdentity::VmmIdentity(const ProcFs& proc_fs) : proc_fs_(proc_fs) {}

VmmIdentity::~VmmIdentity() { Stop(); }

VmmIdentity::Check VmmIdentity::CheckProc(const VmmHandle& handle) const {
  const pid_t pid = handle.process.pid;
  const std::string who = "pid " + std::to_string(pid);
  auto gone = [](std::string reason) { return Check{Verdict::kGone, std::move(reason), {}}; };
  auto mismatch = [](std::string reason) {
    return Check{Verdict::kMismatch, std::move(reason), {}};
  };
  auto unknown = [](std::string reason) { return Check{Verdict::kUnknown, std::move(reason), {}}; };
  if (pid <= 0) return gone("the record names no process (" + who + ")");

  api::StatusOr<std::string> boot_id = proc_fs_.BootId();
  if (!boot_id.ok()) {
    return unknown("cannot read the host's boot id: " + boot_id.status().ToString());
  }
  if (*boot_id != handle.boot_id) {
    return gone("host rebooted since the VMM was launched (boot id " + *boot_id + ", recorded " +
                handle.boot_id + ")");
  }

  api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(pid);
  if (!info.ok()) {
    if (info.status().IsNotFound()) return gone(who + " does not exist");
    return unknown("cannot read " + who + ": " + info.status().ToString());
  }
  if (info->state == 'Z') return gone(who + " has exited (zombie, not reaped)");
  if (info->start_time_ticks != handle.process.start_time_ticks) {
    return mismatch(who + " belongs to another process: start time " +
                    std::to_string(info->start_time_ticks) + ", recorded " +
                    std::to_string(handle.process.start_time_ticks));
  }
  if (info->cmdline.empty()) {
    // The start time matches, so this is the recorded process; an empty
    // command line is seen for a moment after fork+exec, before execve has
    // set the new arguments. Not proven yet: look again shortly.
    return unknown(who + " (start time " + std::to_string(info->start_time_ticks) +
                   ") has an empty command line (inside execve?)");
  }
  if (!CommandLineNamesVmDir(info->cmdline, handle.vm_dir)) {
    return mismatch(who + " (start time " + std::to_string(info->start_time_ticks) +
                    ") has a command line that does not name " + handle.vm_dir);
  }
  return Check{Verdict::kConfirmed, "", {}};
}

VmmIdentity::Check VmmIdentity::Confirm(const api::VmKey& key, const VmmHandle& handle) {
  bool held = false;
  int pidfd = -1;
  {
    std::lock_guard lock(mu_);
    auto it = held_.find(key);
    if (it != held_.end() && it->second->handle == handle) {
      held = true;
      pidfd = it->second->pidfd.get();
    }
  }
  Check check;
  if (pidfd >= 0 && HasExited(pidfd)) {
    check = Check{Verdict::kGone,
                  "pid " + std::to_string(handle.process.pid) + " has exited (its pidfd says so)",
                  {}};
  } else {
    check = CheckProc(handle);
    if (check.verdict == Verdict::kConfirmed) {
      if (held) {
        check.vmm = ConfirmedVmm(handle, pidfd);
      } else {
        check = Hold(key, handle);
      }
    }
  }
  if (check.verdict == Verdict::kMismatch) {
    std::lock_guard lock(mu_);
    ++mismatches_;
  }
  return check;
}

VmmIdentity::Check VmmIdentity::Hold(const api::VmKey& key, const VmmHandle& handle) {
  const pid_t pid = handle.process.pid;
  api::StatusOr<UniqueFd> pidfd = proc_fs_.OpenPidFd(pid);
  if (!pidfd.ok()) {
    if (pidfd.status().IsNotFound()) {
      return Check{
          Verdict::kGone, "pid " + std::to_string(pid) + " exited while being checked", {}};
    }
    return Check{Verdict::kUnknown,
                 "cannot hold pid " + std::to_string(pid) + ": " + pidfd.status().ToString(),
                 {}};
  }
  // The VMM may have exited and its pid been reused between CheckProc() and
  // pidfd_open. The pidfd is the VMM's only if the pid still shows the VMM's
  // start time now: then that process held the pid throughout.
  Check again = CheckProc(handle);
  if (again.verdict != Verdict::kConfirmed) return again;

  const int raw = pidfd->get();
  std::unique_ptr<Held> replaced;  // closed after the lock is released
  {
    std::lock_guard lock(mu_);
    std::unique_ptr<Held>& slot = held_[key];
    if (slot != nullptr && slot->handle == handle) {
      // Held by a concurrent Confirm meanwhile: keep the first, drop ours.
      return Check{Verdict::kConfirmed, "", ConfirmedVmm(handle, slot->pidfd.get())};
    }
    if (slot != nullptr) {
      UnwatchLocked(*slot);
      replaced = std::move(slot);
    }
    slot = std::make_unique<Held>(Held{handle, std::move(pidfd).value(), 0});
    WatchLocked(key, *slot);
  }
  return Check{Verdict::kConfirmed, "", ConfirmedVmm(handle, raw)};
}

void VmmIdentity::Forget(const api::VmKey& key) {
  std::unique_ptr<Held> held;  // closed after the lock is released
  std::lock_guard lock(mu_);
  auto it = held_.find(key);
  if (it == held_.end()) return;
  UnwatchLocked(*it->second);
  held = std::move(it->second);
  held_.erase(it);
}

uint64_t VmmIdentity::mismatches() const {
  std::lock_guard lock(mu_);
  return mismatches_;
}

// epoll_ctl is non-blocking bookkeeping, done under mu_ so that the epoll set
// always matches held_.
void VmmIdentity::WatchLocked(const api::VmKey& key, Held& held) {
  if (!epoll_.valid() || !held.pidfd.valid()) return;
  const uint64_t id = next_watch_id_++;
  // One-shot: an exited process's pidfd stays readable; report it once.
  epoll_event event{};
  event.events = EPOLLIN | EPOLLONESHOT;
  event.data.u64 = id;
  // On failure the exit is still found by the next Confirm().
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, held.pidfd.get(), &event) != 0) return;
  held.watch_id = id;
  watched_.emplace(id, key);
}

void VmmIdentity::UnwatchLocked(Held& held) {
  if (held.watch_id == 0) return;
  if (epoll_.valid()) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, held.pidfd.get(), nullptr);
  watched_.erase(held.watch_id);
  held.watch_id = 0;
}

api::Status VmmIdentity::Start(ExitListener listener) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) {
    return api::Status::Unavailable(std::string("epoll_create1: ") + std::strerror(errno));
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid())
    return api::Status::Unavailable(std::string("eventfd: ") + std::strerror(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kWakeId;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, wake.get(), &event) != 0) {
    return api::Status::Unavailable(std::string("epoll_ctl: ") + std::strerror(errno));
  }

  std::lock_guard lock(mu_);
  if (epoll_.valid()) return api::Status::FailedPrecondition("the exit watcher runs already");
  epoll_ = std::move(epoll);
  wake_ = std::move(wake);
  for (auto& [key, held] : held_) WatchLocked(key, *held);
  thread_ = std::thread(
      [this, epoll_fd = epoll_.get(), listener = std::move(listener)] { Run(epoll_fd, listener); });
  return api::Status::Ok();
}

void VmmIdentity::Stop() {
  std::thread thread;
  int wake_fd = -1;
  {
    std::lock_guard lock(mu_);
    if (!thread_.joinable()) return;
    thread = std::move(thread_);
    wake_fd = wake_.get();
  }
  const uint64_t one = 1;
  // Cannot fail short of a counter overflow; the thread wakes either way.
  [[maybe_unused]] ssize_t written = ::write(wake_fd, &one, sizeof(one));
  thread.join();

  UniqueFd epoll;  // closed after the lock is released
  UniqueFd wake;
  std::lock_guard lock(mu_);
  for (auto& [key, held] : held_) held->watch_id = 0;
  watched_.clear();
  epoll = std::move(epoll_);
  wake = std::move(wake_);
}

void VmmIdentity::Run(int epoll_fd, const ExitListener& listener) {
  epoll_event events[64];
  for (;;) {
    const int n = ::epoll_wait(epoll_fd, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // EBADF/EINVAL: a broken invariant; Confirm() still finds exits
    }
    bool stop = false;
    std::vector<api::VmKey> exited;
    {
      std::lock_guard lock(mu_);
      for (int i = 0; i < n; ++i) {
        const uint64_t id = events[i].data.u64;
        if (id == kWakeId) {
          stop = true;
          continue;
        }
        auto it = watched_.find(id);
        if (it != watched_.end()) exited.push_back(it->second);
      }
    }
    for (const api::VmKey& key : exited) listener(key);
    if (stop) return;
  }
}

api::Status SignalPidFd(int pidfd, int signal) {
  if (pidfd < 0) {
    return api::Status::FailedPrecondition("no pidfd: the process is not a real one");
  }
  if (::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0) == 0) return api::Status::Ok();
  const int err = errno;
  std::string msg = "pidfd_send_signal(" + std::to_string(signal) + "): " + std::strerror(err);
  switch (err) {
    case ESRCH:
      return api::Status::NotFound("the process has exited: " + msg);
    case EBADF:
    case EINVAL:
      return api::Status::InvalidArgument(std::move(msg));
    case EPERM:
      return api::Status::PermissionDenied(std::move(msg));
    default:
      return api::Status::Internal(std::move(msg));
  }
}

}  // namespace vmlet::drivers
