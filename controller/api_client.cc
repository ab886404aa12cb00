#include "controller/api_client.h"

#include <curl/curl.h>

#include <memory>

namespace vmlet::controller {
namespace {

size_t Append(char* data, size_t size, size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

struct CurlDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

}  // namespace

api::StatusOr<ApiResponse> ApiGet(const std::string& address, const std::string& path_and_query,
                                  const std::string& accept, std::chrono::milliseconds timeout) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return api::Status::Internal("curl_easy_init failed");
  const std::string url = "http://" + address + path_and_query;
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  if (!accept.empty()) {
    headers.reset(curl_slist_append(nullptr, ("Accept: " + accept).c_str()));
  }
  ApiResponse out;
  char error[CURL_ERROR_SIZE] = {};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");  // the API is on this host
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &Append);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &out.body);
  if (headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    return api::Status::Unavailable(error[0] != '\0' ? error : curl_easy_strerror(code));
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  out.code = static_cast<int>(status);
  const char* content_type = nullptr;
  curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &content_type);
  if (content_type != nullptr) out.content_type = content_type;
  return out;
}

}  // namespace vmlet::controller
