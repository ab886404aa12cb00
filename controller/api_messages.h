#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "api/clock.h"
#include "controller/api_query.h"
#include "controller/kube_tables.h"

namespace vmlet::controller {

// What passes between the read API's HTTP server and the code that answers
// it (StatusApi): a request, its reply, and the state of an open watch.

// One HTTP request, as the API sees it.
struct ApiRequest {
  std::string method = "GET";
  std::string path;                          // "/apis/vmlet.dev/v1alpha1/virtualmachines"
  std::map<std::string, std::string> query;  // decoded (ParseQuery)
  std::string accept;                        // the Accept header; "" when none
};

// An open watch (`?watch=true`): what it selects and how far it has got.
struct WatchState {
  std::string ns;    // "": every namespace
  std::string name;  // "": any name (a watch on one VM's path sets it)
  LabelSelector labels;
  FieldSelector fields;  // metadata.name, metadata.namespace
  // Objects as Tables (meta.k8s.io/<table_version>) of one row each.
  bool table = false;
  std::string table_version = "v1";
  IncludeObject include = IncludeObject::kMetadata;
  // Send ADDED for every current object first (resourceVersion unset or "0").
  bool send_initial = false;
  uint64_t resource_version = 0;  // the last version sent
  bool columns_sent = false;      // the first Table event carries the column definitions
  api::Clock::MonotonicTime deadline{};
  bool done = false;  // the stream is over
};

// One HTTP reply.
struct ApiReply {
  int code = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // Set for a watch: the body is a stream of lines that NextWatchLines()
  // produces, one JSON watch event a line ({"type", "object"}).
  std::shared_ptr<WatchState> watch;
};

}  // namespace vmlet::controller
