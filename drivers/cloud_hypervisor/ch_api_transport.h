#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "api/clock.h"
#include "api/status.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// One HTTP answer from Cloud Hypervisor's API server, whatever its status.
struct ChHttpResponse {
  int status = 0;    // 200, 204, 400, 500, ...
  std::string body;  // empty for 204 (CH sends none) and for empty bodies

  friend bool operator==(const ChHttpResponse&, const ChHttpResponse&) = default;
};

// The HTTP seam between the Cloud Hypervisor driver and one VMM's API socket:
// it carries requests and brings back answers, and judges nothing but the
// transport. ChApiClient turns the
// answers into Status values; tests give it scripted answers.
//
// Thread-safety: none; one caller at a time (the driver calls one VMM from
// the one worker that holds its VM's key).
class ChApiTransport {
 public:
  virtual ~ChApiTransport() = default;

  // Sends `method` ("GET" or "PUT") to `/api/v1/<endpoint>` ("vm.info"), with
  // `body` as a JSON request body (Content-Type: application/json,
  // Content-Length) when set and no body at all otherwise, and waits for the
  // answer until `deadline`. Any HTTP status is a response, not an error.
  // Errors (the request may or may not have reached the VMM):
  //   Unavailable       the socket file is missing, nobody listens on it
  //                     (connection refused), or the connection closed before
  //                     a whole answer came (the VMM died or is exiting);
  //                     retryable.
  //   DeadlineExceeded  `deadline` passed before the answer (or before the
  //                     call, which is then not made).
  //   InvalidArgument   the socket path does not fit in sockaddr_un.
  //   Internal          anything else the HTTP library reports.
  [[nodiscard]] virtual api::StatusOr<ChHttpResponse> Request(
      std::string_view method, std::string_view endpoint, const std::optional<std::string>& body,
      Deadline deadline) = 0;
};

using ChApiTransportPtr = std::unique_ptr<ChApiTransport>;

// The real one: libcurl over the Unix socket (CURLOPT_UNIX_SOCKET_PATH, URL
// http://localhost/api/v1/<endpoint>). One easy handle, created by the first
// request and reused by every later one, so calls share one keep-alive
// connection: CH serves at most 10 connections, and a VMM gets at most one
// from this transport. Each call's timeout (connect and whole transfer) is
// the time left until its deadline on `clock`.
class CurlChApiTransport final : public ChApiTransport {
 public:
  // Opens nothing. `clock` must outlive the transport.
  CurlChApiTransport(const api::Clock& clock, std::string socket_path);
  ~CurlChApiTransport() override;  // closes the connection, if one is open

  CurlChApiTransport(const CurlChApiTransport&) = delete;
  CurlChApiTransport& operator=(const CurlChApiTransport&) = delete;

  api::StatusOr<ChHttpResponse> Request(std::string_view method, std::string_view endpoint,
                                        const std::optional<std::string>& body,
                                        Deadline deadline) override;

  const std::string& socket_path() const { return socket_path_; }

 private:
  struct Easy;  // the curl easy handle

  const api::Clock& clock_;
  const std::string socket_path_;
  std::unique_ptr<Easy> easy_;  // made by the first Request()
};

}  // namespace vmlet::drivers
