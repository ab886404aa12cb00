#include "drivers/host/fd_waiter.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace vmlet::drivers {

api::StatusOr<bool> FdWaiter::Wait(int fd, short events, Deadline deadline) const {
  // poll() takes an int of milliseconds; a longer wait is made of several.
  constexpr std::chrono::milliseconds kLongestPoll{std::chrono::hours(24)};
  for (;;) {
    // Rounded up, so that a sub-millisecond remainder still waits rather
    // than spins.
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_.MonotonicNow());
    const auto timeout = std::clamp(left, std::chrono::milliseconds(0), kLongestPoll);
    pollfd pfd{.fd = fd, .events = events, .revents = 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
    if (n > 0) return true;
    if (n == 0 && left <= kLongestPoll) return false;
    if (n < 0 && errno != EINTR) {
      return api::Status::Internal(std::string("poll: ") + std::strerror(errno));
    }
  }
}

bool FdWaiter::WaitReadable(int fd, Deadline deadline) const {
  api::StatusOr<bool> ready = Wait(fd, POLLIN, deadline);
  return ready.ok() && *ready;
}

bool FdWaiter::IsReadable(int fd) {
  pollfd pfd{.fd = fd, .events = POLLIN, .revents = 0};
  int n;
  do {
    n = ::poll(&pfd, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n > 0;
}

}  // namespace vmlet::drivers
