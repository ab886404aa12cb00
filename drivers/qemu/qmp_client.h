#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "drivers/host/fd_waiter.h"
#include "drivers/unique_fd.h"

namespace vmlet::drivers {

// A client for QEMU's machine protocol (QMP) over a Unix stream socket, as
// QEMU serves it with `-qmp unix:<path>,server=on,wait=off`.
//
// Protocol handled (the QMP specification, docs/interop/qmp-spec in QEMU):
// one JSON object per line (CRLF or LF); a greeting holding "QMP"; the
// `qmp_capabilities` handshake; commands carry a fresh numeric "id" and are
// answered by the object echoing it with "return" or "error"; events
// ("event" key) may arrive at any time, including between a command and its
// reply.
//
// Every blocking step waits (FdWaiter) for at most the time the caller's
// clock says is left until the deadline; nothing blocks past it.
//
// Thread-safety: none. A QmpClient has one owner, which runs one command at a
// time; the event handler runs on the caller's thread, inside Execute().
class QmpClient {
 public:
  using Deadline = api::Clock::MonotonicTime;
  // Called with each event object (the whole line: "event", "data",
  // "timestamp") as it is read. Must not call back into the client and must
  // not throw.
  using EventHandler = std::function<void(const nlohmann::json& event)>;

  // Connects to the QMP socket at `socket_path`, reads the greeting and
  // completes the `qmp_capabilities` handshake, all before `deadline` on
  // `clock` (which must outlive the client).
  // Errors:
  //   Unavailable       the socket is missing or refuses connections (QEMU
  //                     not up yet, or gone), or the server closed the
  //                     connection during the handshake; retryable.
  //   DeadlineExceeded  the greeting or the handshake reply did not arrive in
  //                     time.
  //   Internal          the greeting is not a JSON object with "QMP", or the
  //                     handshake was refused, or a socket call failed
  //                     unexpectedly.
  //   InvalidArgument   `socket_path` does not fit in sockaddr_un.
  // `on_event`, if set, is called for every event read from now on (events
  // are also kept for TakeEvents()).
  [[nodiscard]] static api::StatusOr<std::unique_ptr<QmpClient>> Connect(
      const std::string& socket_path, const api::Clock& clock, Deadline deadline,
      EventHandler on_event = nullptr);

  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;
  ~QmpClient() = default;

  // Sends `{"execute": command, "arguments": arguments, "id": N}` (no
  // "arguments" when `arguments` is null) and reads until the reply with id N.
  // Events read meanwhile are kept (TakeEvents()) and passed to the event
  // handler; objects with another or no id (for example a late reply to a
  // command that timed out) are dropped.
  // Returns the reply's "return" value (often an empty object).
  // Errors:
  //   FailedPrecondition  QEMU answered with "error": message
  //                       "<class>: <desc>" (desc is for people only).
  //   Unavailable         the connection closed (EOF, ECONNRESET, EPIPE)
  //                       before the reply: "QMP connection closed". Every
  //                       later call fails the same way at once.
  //                       EXCEPTION: for `quit`, a close after the command
  //                       was sent and before the reply is the expected
  //                       outcome and returns an empty object.
  //   DeadlineExceeded    no reply before `deadline`. The command may still
  //                       take effect; the client stays usable (its late
  //                       reply is dropped by id).
  //   Internal            a line that is not JSON, a reply with neither
  //                       "return" nor "error", or an unexpected socket error.
  [[nodiscard]] api::StatusOr<nlohmann::json> Execute(const std::string& command,
                                                      const nlohmann::json& arguments,
                                                      Deadline deadline);

  // The events read so far (oldest first), emptying the list. Events are read
  // only while Connect() or Execute() runs.
  std::vector<nlohmann::json> TakeEvents();

  // Replaces the event handler (null for none). Applies to events read from
  // now on.
  void SetEventHandler(EventHandler handler);

  // True once the server closed the connection.
  bool closed() const { return closed_; }

 private:
  QmpClient(UniqueFd fd, const api::Clock& clock, EventHandler on_event);

  // Outcome of waiting for the next complete line.
  enum class ReadResult { kLine, kClosed, kDeadline, kError };

  // Waits, until `deadline`, for one complete line (without its line end) in
  // `*line`. On kError, `*error` says why.
  ReadResult ReadLine(Deadline deadline, std::string* line, api::Status* error);
  // Writes all of `data` before `deadline`.
  api::Status WriteAll(const std::string& data, Deadline deadline);

  UniqueFd fd_;
  FdWaiter waiter_;
  EventHandler on_event_;
  std::string buffer_;  // bytes read but not yet split into lines
  std::vector<nlohmann::json> events_;
  int64_t next_id_ = 1;
  bool closed_ = false;
};

using QmpClientPtr = std::unique_ptr<QmpClient>;

}  // namespace vmlet::drivers
