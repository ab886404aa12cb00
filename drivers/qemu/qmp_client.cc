#include "drivers/qemu/qmp_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <utility>

namespace vmlet::drivers {
namespace {

using json = nlohmann::json;

// A line longer than this is not QMP; refuse it rather than grow without bound.
constexpr size_t kMaxLineBytes = size_t{16} * 1024 * 1024;

constexpr char kClosedMessage[] = "QMP connection closed";

std::string ErrnoText(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

bool IsClosedErrno(int err) { return err == ECONNRESET || err == EPIPE; }

}  // namespace

QmpClient::QmpClient(UniqueFd fd, const api::Clock& clock, EventHandler on_event)
    : fd_(std::move(fd)), waiter_(clock), on_event_(std::move(on_event)) {}

api::StatusOr<std::unique_ptr<QmpClient>> QmpClient::Connect(const std::string& socket_path,
                                                             const api::Clock& clock,
                                                             Deadline deadline,
                                                             EventHandler on_event) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return api::Status::InvalidArgument("QMP socket path is empty or too long: " + socket_path);
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());

  // Non-blocking, so that no read or write can outlast the deadline; every
  // wait goes through the FdWaiter.
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return api::Status::Internal(ErrnoText("socket", errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    // Missing socket, nobody listening, or a full backlog: QEMU is not
    // (or no longer) serving; trying again later may work.
    if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN) {
      return api::Status::Unavailable(ErrnoText(("connect " + socket_path).c_str(), err));
    }
    if (err == EACCES) {
      return api::Status::PermissionDenied(ErrnoText(("connect " + socket_path).c_str(), err));
    }
    return api::Status::Internal(ErrnoText(("connect " + socket_path).c_str(), err));
  }

  std::unique_ptr<QmpClient> client(new QmpClient(std::move(fd), clock, std::move(on_event)));

  std::string line;
  api::Status error;
  switch (client->ReadLine(deadline, &line, &error)) {
    case ReadResult::kLine:
      break;
    case ReadResult::kClosed:
      return api::Status::Unavailable("QMP connection closed before the greeting");
    case ReadResult::kDeadline:
      return api::Status::DeadlineExceeded("no QMP greeting before the deadline");
    case ReadResult::kError:
      return error;
  }
  const json greeting = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!greeting.is_object() || !greeting.contains("QMP")) {
    return api::Status::Internal("malformed QMP greeting: " + line.substr(0, 200));
  }

  api::StatusOr<json> caps = client->Execute("qmp_capabilities", nullptr, deadline);
  if (!caps.ok()) {
    if (caps.status().code() == api::Status::Code::kFailedPrecondition) {
      return api::Status::Internal("qmp_capabilities refused: " + caps.status().message());
    }
    return caps.status().WithContext("qmp_capabilities");
  }
  return client;
}

api::StatusOr<json> QmpClient::Execute(const std::string& command, const json& arguments,
                                       Deadline deadline) {
  const bool is_quit = command == "quit";
  if (closed_) return api::Status::Unavailable(kClosedMessage);

  const int64_t id = next_id_++;
  json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  // replace: invalid UTF-8 in a caller's string must not throw.
  std::string wire = request.dump(-1, ' ', false, json::error_handler_t::replace);
  wire += '\n';

  if (api::Status written = WriteAll(wire, deadline); !written.ok()) return written;

  for (;;) {
    std::string line;
    api::Status error;
    switch (ReadLine(deadline, &line, &error)) {
      case ReadResult::kLine:
        break;
      case ReadResult::kClosed:
        if (is_quit) return json::object();
        return api::Status::Unavailable(kClosedMessage);
      case ReadResult::kDeadline:
        return api::Status::DeadlineExceeded("no reply to QMP command " + command +
                                             " before the deadline");
      case ReadResult::kError:
        return error;
    }
    if (line.find_first_not_of(" \t") == std::string::npos) continue;

    const json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!msg.is_object()) {
      return api::Status::Internal("QMP sent a line that is not a JSON object: " +
                                   line.substr(0, 200));
    }
    if (msg.contains("event")) {
      events_.push_back(msg);
      if (on_event_) on_event_(msg);
      continue;
    }
    const auto id_it = msg.find("id");
    if (id_it == msg.end() || !id_it->is_number_integer() || id_it->get<int64_t>() != id) {
      continue;  // a late reply to an earlier command, or one QEMU could not parse
    }
    if (const auto ret = msg.find("return"); ret != msg.end()) return *ret;
    if (const auto err = msg.find("error"); err != msg.end()) {
      std::string cls = "UnknownError";
      std::string desc;
      if (err->is_object()) {
        if (auto c = err->find("class"); c != err->end() && c->is_string()) {
          cls = c->get<std::string>();
        }
        if (auto d = err->find("desc"); d != err->end() && d->is_string()) {
          desc = d->get<std::string>();
        }
      }
      return api::Status::FailedPrecondition(cls + ": " + desc);
    }
    return api::Status::Internal("QMP reply to " + command + " has neither return nor error");
  }
}

std::vector<json> QmpClient::TakeEvents() { return std::exchange(events_, {}); }

void QmpClient::SetEventHandler(EventHandler handler) { on_event_ = std::move(handler); }

QmpClient::ReadResult QmpClient::ReadLine(Deadline deadline, std::string* line,
                                          api::Status* error) {
  for (;;) {
    if (const size_t nl = buffer_.find('\n'); nl != std::string::npos) {
      size_t end = nl;
      if (end > 0 && buffer_[end - 1] == '\r') --end;
      line->assign(buffer_, 0, end);
      buffer_.erase(0, nl + 1);
      return ReadResult::kLine;
    }
    if (closed_) return ReadResult::kClosed;  // a partial last line is dropped
    if (buffer_.size() > kMaxLineBytes) {
      *error = api::Status::Internal("QMP line longer than 16 MiB");
      return ReadResult::kError;
    }

    char chunk[4096];
    const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
    if (n > 0) {
      buffer_.append(chunk, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || IsClosedErrno(errno)) {
      closed_ = true;
      continue;  // hand out complete lines still buffered first
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *error = api::Status::Internal(ErrnoText("recv", errno));
      return ReadResult::kError;
    }
    api::StatusOr<bool> ready = waiter_.Wait(fd_.get(), POLLIN, deadline);
    if (!ready.ok()) {
      *error = ready.status();
      return ReadResult::kError;
    }
    if (!*ready) return ReadResult::kDeadline;
  }
}

api::Status QmpClient::WriteAll(const std::string& data, Deadline deadline) {
  size_t sent = 0;
  while (sent < data.size()) {
    // MSG_NOSIGNAL: a closed peer is an EPIPE value, not a SIGPIPE.
    const ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (IsClosedErrno(errno)) {
      closed_ = true;
      return api::Status::Unavailable(kClosedMessage);
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return api::Status::Internal(ErrnoText("send", errno));
    }
    api::StatusOr<bool> ready = waiter_.Wait(fd_.get(), POLLOUT, deadline);
    if (!ready.ok()) return ready.status();
    if (!*ready)
      return api::Status::DeadlineExceeded("QMP socket not writable before the deadline");
  }
  return api::Status::Ok();
}

}  // namespace vmlet::drivers
