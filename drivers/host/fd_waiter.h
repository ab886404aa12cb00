#pragma once

#include "api/clock.h"
#include "api/status.h"

namespace vmlet::drivers {

// The one way drivers wait on a file descriptor (a socket, a pidfd, an
// eventfd) with a time limit: until it is ready or a deadline on the
// monotonic clock of an api::Clock has passed.
//
// The wait itself is poll(2), for the time the clock says is left until the
// deadline (read again after an interrupted poll): with the real clock that
// ends at the deadline; with a fake clock, a deadline the clock has reached
// ends the wait at once, so a test drives timeouts by moving its clock and
// never sleeps. Nothing here reads the real clock.
//
// Thread-safe (it keeps nothing but the clock).
class FdWaiter {
 public:
  using Deadline = api::Clock::MonotonicTime;

  // `clock` must outlive the waiter.
  explicit FdWaiter(const api::Clock& clock) : clock_(clock) {}

  // Waits until `fd` is ready for `events` (POLLIN, POLLOUT) or `deadline`.
  // True when ready, including an error or a hangup on `fd` (the next I/O
  // call reports it); false once the deadline has passed. Readiness at the
  // deadline still counts: `fd` is always looked at once. Internal when
  // poll() fails (EINTR is retried).
  [[nodiscard]] api::StatusOr<bool> Wait(int fd, short events, Deadline deadline) const;

  // Wait() for POLLIN, a poll() failure counting as not ready: for pidfds,
  // which turn readable when their process exits.
  bool WaitReadable(int fd, Deadline deadline) const;

  // Whether `fd` is readable now, without waiting.
  static bool IsReadable(int fd);

 private:
  const api::Clock& clock_;
};

}  // namespace vmlet::drivers
