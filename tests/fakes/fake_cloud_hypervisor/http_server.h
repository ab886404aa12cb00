#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace vmlet::testing::fake_ch {

// One parsed HTTP/1.x request.
struct HttpRequest {
  std::string method;  // as sent, e.g. "PUT"
  std::string path;    // absolute path, e.g. "/api/v1/vm.boot" (absolute-form URIs are reduced)
  std::map<std::string, std::string> headers;  // names lower-cased
  // nullopt when the request had no body (no Content-Length, or 0), as micro-http reports it.
  std::optional<std::string> body;
};

// One response, framed by SerializeResponse().
struct HttpResponse {
  int status = 200;
  // The body. Every status but 100 and 204 is sent with Content-Type and
  // Content-Length (0 when `body` is empty); 100 and 204 never carry either.
  std::string body;
  std::string server = "Cloud Hypervisor API";
  std::string content_type = "application/json";
  // Closes the connection once the response is written.
  bool close_after = false;
};

// The bytes micro-http (Cloud Hypervisor's HTTP server) writes for `response`:
//   "HTTP/1.1 <code> \r\n"   (no reason phrase; the space before CRLF stays)
//   "Server: <server>\r\nConnection: keep-alive\r\n"
//   ["Content-Type: <type>\r\nContent-Length: <n>\r\n"]   (not for 100 and 204)
//   "\r\n" <body>
std::string SerializeResponse(const HttpResponse& response);

// What micro-http sends to a connection beyond its limit, verbatim (note the
// status line without the trailing space, and "Connection: close").
inline constexpr char kServerFullResponse[] =
    "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Length: 40\r\n\r\n"
    "{ \"error\": \"Too many open connections\" }";

// An HTTP/1.1 server on a listening Unix stream socket, shaped after the one
// in Cloud Hypervisor (Firecracker's micro-http crate):
//  - persistent connections; pipelined requests are answered in order;
//  - request bodies are framed by Content-Length only (chunked bodies are
//    refused), `Expect: 100-continue` gets an interim 100;
//  - at most `max_connections` connections; see OverflowMode for the next one;
//  - a malformed request gets micro-http's own 400 (Server: Firecracker API,
//    a `{ "error": ... }` body that is not valid JSON), then the connection
//    is closed;
//  - a peer that closes or half-closes its side loses whatever it has not
//    been answered yet (micro-http drops a connection on RDHUP);
//  - one request is handled at a time, server-wide: while a handler has not
//    answered, nothing is read or accepted on any connection (CH's HTTP
//    thread blocks until the VMM thread has done the work).
//
// Single-threaded: every method, and every Responder, must be called on the
// thread that calls RunOnce(). Starts no threads.
class HttpServer {
 public:
  enum class OverflowMode {
    // Accept, write kServerFullResponse, close (what micro-http's code does).
    kReject,
    // Stop accepting: further connects wait in the listen backlog unanswered
    // until a connection closes.
    kBacklog,
  };

  struct Options {
    size_t max_connections = 10;              // micro-http's MAX_CONNECTIONS
    size_t max_body_bytes = 4 * 1024 * 1024;  // CH's HTTP_PAYLOAD_MAX_SIZE
    size_t max_line_bytes = 1024;             // micro-http's BUFFER_SIZE
    OverflowMode overflow = OverflowMode::kReject;
  };

  // Answers one request. Call exactly once; may be called later (after the
  // handler has returned), which is how a slow call is modelled. Calling it
  // after the connection went away is harmless.
  using Responder = std::function<void(HttpResponse)>;
  // Handles one complete request.
  using Handler = std::function<void(const HttpRequest&, Responder)>;
  // Told about each request rejected before it reached the handler.
  using MalformedObserver = std::function<void(const std::string& reason)>;

  // Takes ownership of `listen_fd`, a bound and listening Unix stream socket.
  HttpServer(int listen_fd, Options options, Handler handler,
             MalformedObserver on_malformed = nullptr);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Dispatches requests already buffered (they wait there while a handler
  // has not answered) and writes what the sockets take. Call it before
  // RunOnce(), after anything that may have answered a request.
  void ServePending();

  // Waits up to `timeout` (negative: no limit) for socket activity or for
  // `interrupt_fd` (-1: none) to become readable, then serves what arrived:
  // accepts, reads, dispatches complete requests, writes what the sockets
  // take. Returns true when `interrupt_fd` is readable.
  bool RunOnce(std::chrono::milliseconds timeout, int interrupt_fd);

  // Writes out queued responses, waiting at most `timeout`, then closes every
  // connection and the listening socket. Used at exit, as CH's
  // flush_outgoing_writes() is.
  void FlushAndClose(std::chrono::milliseconds timeout);

  size_t connection_count() const { return connections_.size(); }

 private:
  struct Connection;

  void Accept();
  void ReadFrom(Connection& connection);
  void DispatchBuffered(Connection& connection);
  void WriteTo(Connection& connection);
  void Reject(Connection& connection, const std::string& reason);
  void Enqueue(uint64_t connection_id, const HttpResponse& response);
  void CloseFinished();

  int listen_fd_;
  Options options_;
  Handler handler_;
  MalformedObserver on_malformed_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::unique_ptr<Connection>> connections_;
  // The connection whose request the handler has not answered yet.
  std::optional<uint64_t> awaiting_response_;
};

}  // namespace vmlet::testing::fake_ch
