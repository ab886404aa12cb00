#include "tests/fakes/fake_cloud_hypervisor/http_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <string_view>
#include <utility>
#include <vector>

namespace vmlet::testing::fake_ch {
namespace {

constexpr std::string_view kCrlf = "\r\n";
// Bound on the whole header block of one request, so a peer that never sends
// the blank line cannot grow a buffer without limit.
constexpr size_t kMaxHeaderBlockBytes = 64 * 1024;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsKnownMethod(std::string_view method) {
  // The methods micro-http's parser knows; anything else is a parse error.
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"};
  return std::find(std::begin(kMethods), std::end(kMethods), method) != std::end(kMethods);
}

// Reduces an origin-form ("/x") or absolute-form ("http://host/x") target to
// its path; nullopt when it is neither.
std::optional<std::string> AbsolutePath(std::string_view target) {
  if (!target.empty() && target.front() == '/') return std::string(target);
  constexpr std::string_view kScheme = "http://";
  if (target.substr(0, kScheme.size()) == kScheme) {
    const size_t slash = target.find('/', kScheme.size());
    if (slash == std::string_view::npos) return std::string("/");
    return std::string(target.substr(slash));
  }
  return std::nullopt;
}

}  // namespace

std::string SerializeResponse(const HttpResponse& response) {
  std::string out = "HTTP/1.1 " + std::to_string(response.status) + " \r\n";
  out += "Server: " + response.server + "\r\n";
  out += "Connection: keep-alive\r\n";
  const bool has_content = response.status != 100 && response.status != 204;
  if (has_content) {
    out += "Content-Type: " + response.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(response.body.size()) + "\r\n";
  }
  out += kCrlf;
  if (has_content) out += response.body;
  return out;
}

struct HttpServer::Connection {
  uint64_t id = 0;
  int fd = -1;
  std::string in;   // received, not yet parsed
  std::string out;  // serialized responses not yet written
  bool close_after_write = false;
  bool dead = false;  // to be closed without writing anything more
  // A request whose headers are parsed and whose body is still arriving.
  std::optional<HttpRequest> partial;
  size_t body_bytes = 0;
};

HttpServer::HttpServer(int listen_fd, Options options, Handler handler,
                       MalformedObserver on_malformed)
    : listen_fd_(listen_fd),
      options_(options),
      handler_(std::move(handler)),
      on_malformed_(std::move(on_malformed)) {}

HttpServer::~HttpServer() {
  for (auto& [id, connection] : connections_) ::close(connection->fd);
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void HttpServer::ServePending() {
  for (auto& [id, connection] : connections_) DispatchBuffered(*connection);
  for (auto& [id, connection] : connections_) WriteTo(*connection);
  CloseFinished();
}

bool HttpServer::RunOnce(std::chrono::milliseconds timeout, int interrupt_fd) {
  const bool busy = awaiting_response_.has_value();
  std::vector<pollfd> fds;
  std::vector<Connection*> polled;
  fds.push_back({interrupt_fd, POLLIN, 0});
  const bool accepting = listen_fd_ >= 0 && !busy &&
                         (options_.overflow == OverflowMode::kReject ||
                          connections_.size() < options_.max_connections);
  fds.push_back({accepting ? listen_fd_ : -1, POLLIN, 0});
  for (auto& [id, connection] : connections_) {
    short events = POLLRDHUP;
    if (!busy && !connection->close_after_write) events |= POLLIN;
    if (!connection->out.empty()) events |= POLLOUT;
    fds.push_back({connection->fd, events, 0});
    polled.push_back(connection.get());
  }

  int ready;
  do {
    ready = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) return false;

  if (fds[1].revents & POLLIN) Accept();
  for (size_t i = 0; i < polled.size(); ++i) {
    Connection& connection = *polled[i];
    const short revents = fds[i + 2].revents;
    if (revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)) {
      // micro-http drops the connection and whatever it still owed it.
      connection.dead = true;
      continue;
    }
    if (revents & POLLIN) {
      ReadFrom(connection);
      DispatchBuffered(connection);
    }
    if (!connection.out.empty()) WriteTo(connection);
  }
  CloseFinished();
  return interrupt_fd >= 0 && (fds[0].revents & POLLIN);
}

void HttpServer::Accept() {
  for (;;) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or a connection that died before we got it
    if (connections_.size() >= options_.max_connections) {
      // Best effort, as micro-http's single write() is.
      [[maybe_unused]] const ssize_t n =
          ::send(fd, kServerFullResponse, sizeof(kServerFullResponse) - 1, MSG_NOSIGNAL);
      ::close(fd);
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->id = next_id_++;
    connection->fd = fd;
    connections_.emplace(connection->id, std::move(connection));
    if (options_.overflow == OverflowMode::kBacklog &&
        connections_.size() >= options_.max_connections) {
      return;
    }
  }
}

void HttpServer::ReadFrom(Connection& connection) {
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::recv(connection.fd, buffer, sizeof(buffer), MSG_DONTWAIT);
    if (n > 0) {
      connection.in.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    connection.dead = true;  // EOF or a reset
    return;
  }
}

void HttpServer::DispatchBuffered(Connection& connection) {
  while (!awaiting_response_ && !connection.dead && !connection.close_after_write) {
    if (!connection.partial) {
      const size_t header_end = connection.in.find("\r\n\r\n");
      if (header_end == std::string::npos) {
        const size_t first_line_end = connection.in.find(kCrlf);
        if ((first_line_end == std::string::npos &&
             connection.in.size() > options_.max_line_bytes) ||
            connection.in.size() > kMaxHeaderBlockBytes) {
          Reject(connection, "Invalid request.");
        }
        return;
      }
      const std::string_view block(connection.in.data(), header_end);
      std::vector<std::string_view> lines;
      for (size_t start = 0;;) {
        const size_t end = block.find(kCrlf, start);
        lines.push_back(block.substr(start, end == std::string_view::npos ? end : end - start));
        if (end == std::string_view::npos) break;
        start = end + kCrlf.size();
      }
      for (std::string_view line : lines) {
        if (line.size() > options_.max_line_bytes) {
          return Reject(connection, "Invalid request: a line is longer than " +
                                        std::to_string(options_.max_line_bytes) + " bytes.");
        }
      }

      HttpRequest request;
      const std::string_view request_line = lines[0];
      const size_t sp1 = request_line.find(' ');
      const size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
      if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
          request_line.find(' ', sp2 + 1) != std::string_view::npos) {
        return Reject(connection, "Invalid request.");
      }
      request.method = std::string(request_line.substr(0, sp1));
      const std::string_view target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
      const std::string_view version = request_line.substr(sp2 + 1);
      if (!IsKnownMethod(request.method)) return Reject(connection, "Invalid HTTP Method.");
      if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        return Reject(connection, "Invalid HTTP Version.");
      }
      std::optional<std::string> path = AbsolutePath(target);
      if (!path) return Reject(connection, "Invalid URI.");
      request.path = std::move(*path);

      size_t content_length = 0;
      bool expect_continue = false;
      for (size_t i = 1; i < lines.size(); ++i) {
        const size_t colon = lines[i].find(':');
        if (colon == std::string_view::npos || colon == 0) {
          return Reject(connection, "Invalid header. Reason: Invalid header format.");
        }
        const std::string name = Lower(lines[i].substr(0, colon));
        const std::string value(Trim(lines[i].substr(colon + 1)));
        if (name == "content-length") {
          if (value.empty() || value.size() > 12 ||
              !std::all_of(value.begin(), value.end(),
                           [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
            return Reject(
                connection,
                "Invalid header. Reason: Invalid value. Key:Content-Length; Value:" + value);
          }
          const size_t length = std::stoull(value);
          if (request.headers.count(name) && length != content_length) {
            return Reject(connection, "Invalid header. Reason: conflicting Content-Length.");
          }
          content_length = length;
        } else if (name == "transfer-encoding" &&
                   Lower(value).find("chunked") != std::string::npos) {
          // micro-http reads bodies by Content-Length only; a chunked body
          // would be parsed as the next request. Refuse it outright.
          return Reject(connection,
                        "Invalid header. Reason: chunked transfer encoding is not supported; "
                        "send Content-Length.");
        } else if (name == "expect" && Lower(value) == "100-continue") {
          expect_continue = true;
        }
        request.headers[name] = value;
      }
      if (content_length > options_.max_body_bytes) {
        return Reject(connection, "Request payload with size " + std::to_string(content_length) +
                                      " is larger than the limit of " +
                                      std::to_string(options_.max_body_bytes) +
                                      " allowed by server.");
      }
      connection.in.erase(0, header_end + 4);
      connection.partial = std::move(request);
      connection.body_bytes = content_length;
      if (content_length > 0 && expect_continue) {
        HttpResponse interim;
        interim.status = 100;
        interim.server = "Firecracker API";
        connection.out += SerializeResponse(interim);
      }
    }

    if (connection.in.size() < connection.body_bytes) return;  // body still arriving
    HttpRequest request = std::move(*connection.partial);
    connection.partial.reset();
    if (connection.body_bytes > 0) {
      request.body = connection.in.substr(0, connection.body_bytes);
      connection.in.erase(0, connection.body_bytes);
    }
    connection.body_bytes = 0;

    awaiting_response_ = connection.id;
    const uint64_t id = connection.id;
    handler_(request, [this, id](HttpResponse response) { Enqueue(id, response); });
  }
}

void HttpServer::Enqueue(uint64_t connection_id, const HttpResponse& response) {
  if (awaiting_response_ == connection_id) awaiting_response_.reset();
  auto it = connections_.find(connection_id);
  if (it == connections_.end() || it->second->dead) return;
  Connection& connection = *it->second;
  connection.out += SerializeResponse(response);
  if (response.close_after) connection.close_after_write = true;
}

void HttpServer::Reject(Connection& connection, const std::string& reason) {
  if (on_malformed_) on_malformed_(reason);
  HttpResponse response;
  response.status = 400;
  response.server = "Firecracker API";
  response.content_type = "text/plain";
  // micro-http's own words, raw newline (so: not valid JSON) included.
  response.body =
      "{ \"error\": \"" + reason + "\nAll previous unanswered requests will be dropped.\" }";
  response.close_after = true;
  connection.in.clear();
  connection.partial.reset();
  connection.out += SerializeResponse(response);
  connection.close_after_write = true;
}

void HttpServer::WriteTo(Connection& connection) {
  while (!connection.dead && !connection.out.empty()) {
    const ssize_t n = ::send(connection.fd, connection.out.data(), connection.out.size(),
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      connection.out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    connection.dead = true;  // EPIPE, ECONNRESET
  }
  if (connection.out.empty() && connection.close_after_write) connection.dead = true;
}

void HttpServer::CloseFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->second->dead) {
      ::close(it->second->fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void HttpServer::FlushAndClose(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Connection*> pending;
    for (auto& [id, connection] : connections_) {
      WriteTo(*connection);
      if (!connection->dead && !connection->out.empty()) {
        fds.push_back({connection->fd, POLLOUT, 0});
        pending.push_back(connection.get());
      }
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (fds.empty() || left.count() <= 0) break;
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) < 0 && errno != EINTR) {
      break;
    }
  }
  for (auto& [id, connection] : connections_) ::close(connection->fd);
  connections_.clear();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

}  // namespace vmlet::testing::fake_ch
