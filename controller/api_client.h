#pragma once

// The client side of vmlet's read API: what `vmlet get` and `vmlet describe`
// send to a running `vmlet run` (controller/status_api.h answers it).

#include <chrono>
#include <string>

#include "api/status.h"

namespace vmlet::controller {

struct ApiResponse {
  int code = 0;
  std::string content_type;
  std::string body;
};

// GETs `path_and_query` from the API at `address` ("HOST:PORT") with
// libcurl, synchronously: nothing of the request outlives the call, so a
// one-shot command can exit as soon as it has printed (cpprestsdk's client
// left a continuation on its thread pool after a refused connection, which a
// prompt exit leaked). Unavailable (with the reason) when nothing answers
// there, such as a refused connection or a timeout.
api::StatusOr<ApiResponse> ApiGet(const std::string& address, const std::string& path_and_query,
                                  const std::string& accept, std::chrono::milliseconds timeout);

}  // namespace vmlet::controller
