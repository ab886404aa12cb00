#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace vmlet::testing {

// One HTTP request as the tests make them (libcurl, synchronous).
struct HttpRequest {
  std::string url{};
  std::string method = "GET";  // POST and PUT send "{}" as their body
  std::string accept{};        // the Accept header; none when empty
  std::string unix_socket{};   // connect to this Unix socket instead of the URL's host
  std::chrono::milliseconds timeout{10000};
};

// What came back. `status` is the HTTP status, 0 when no answer came; then
// `error` is libcurl's reason.
struct HttpReply {
  long status = 0;
  std::string body;
  std::string content_type;
  std::string error;

  // The body as JSON, or a discarded value when it is not JSON.
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
};

HttpReply Http(const HttpRequest& request);

// GET `url` (over the Unix socket `unix_socket` when it is not empty).
HttpReply HttpGet(const std::string& url, const std::string& unix_socket = "");

// `text` percent-encoded for a URL query value (RFC 3986: all but the
// unreserved characters).
std::string UrlEncode(const std::string& text);

}  // namespace vmlet::testing
