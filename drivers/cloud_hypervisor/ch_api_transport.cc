#include "drivers/cloud_hypervisor/ch_api_transport.h"

#include <curl/curl.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace vmlet::drivers {
namespace {

constexpr char kUrlPrefix[] = "http://localhost/api/v1/";

size_t AppendBody(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

struct CurlChApiTransport::Easy {
  Easy() : curl(curl_easy_init()) {}
  ~Easy() {
    if (curl) curl_easy_cleanup(curl);
  }
  Easy(const Easy&) = delete;
  Easy& operator=(const Easy&) = delete;

  CURL* curl;
};

CurlChApiTransport::CurlChApiTransport(const api::Clock& clock, std::string socket_path)
    : clock_(clock), socket_path_(std::move(socket_path)) {}

CurlChApiTransport::~CurlChApiTransport() = default;

api::StatusOr<ChHttpResponse> CurlChApiTransport::Request(std::string_view method,
                                                          std::string_view endpoint,
                                                          const std::optional<std::string>& body,
                                                          Deadline deadline) {
  const std::string what = std::string(method) + " " + std::string(endpoint);
  if (socket_path_.size() >= sizeof(sockaddr_un::sun_path)) {
    return api::Status::InvalidArgument("API socket path longer than " +
                                        std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                                        " bytes: " + socket_path_);
  }
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_.MonotonicNow());
  if (left.count() <= 0) {
    return api::Status::DeadlineExceeded(what + ": no time left for the call");
  }
  if (!easy_) easy_ = std::make_unique<Easy>();
  CURL* curl = easy_->curl;
  if (!curl) return api::Status::Internal(what + ": curl_easy_init failed");

  // Reset keeps the handle's connection cache: the next call reuses the
  // keep-alive connection when the server has not closed it.
  curl_easy_reset(curl);
  const std::string url = kUrlPrefix + std::string(endpoint);
  const std::string verb(method);
  ChHttpResponse response;
  char error[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, socket_path_.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXCONNECTS, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(left.count()));
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(left.count()));
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &AppendBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  if (verb == "GET") {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, verb.c_str());
  }
  if (body) {
    // POSTFIELDS (not UPLOAD) so that curl sends Content-Length: CH frames
    // bodies by it alone. "Expect:" drops curl's 100-continue round trip.
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);  // `error` goes out of scope

  if (code == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    response.status = static_cast<int>(status);
    return response;
  }
  long os_errno = 0;
  curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &os_errno);
  const std::string detail =
      std::string(error[0] != '\0' ? error : curl_easy_strerror(code)) +
      (os_errno != 0 ? std::string(" (") + std::strerror(static_cast<int>(os_errno)) + ")" : "");
  switch (code) {
    case CURLE_COULDNT_CONNECT:
      return api::Status::Unavailable(what + ": cannot connect to " + socket_path_ + ": " + detail);
    case CURLE_OPERATION_TIMEDOUT:
      return api::Status::DeadlineExceeded(what + ": no answer from " + socket_path_ +
                                           " before the deadline");
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
      return api::Status::Unavailable(what + ": the connection to " + socket_path_ +
                                      " closed before an answer: " + detail);
    default:
      return api::Status::Internal(what + ": " + detail);
  }
}

}  // namespace vmlet::drivers
