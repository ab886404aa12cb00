#include "drivers/cloud_hypervisor/ch_api_client.h"

#include <algorithm>
#include <utility>

namespace vmlet::drivers {
namespace {

using nlohmann::json;

constexpr std::string_view kFromApi = "Error from API";

std::string_view Trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(kSpace) - begin + 1);
}

// The body of a 2xx answer that must carry a JSON object.
api::StatusOr<json> JsonObject(std::string_view endpoint, const ChHttpResponse& response) {
  json parsed = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return api::Status::Internal(std::string(endpoint) + ": the answer (HTTP " +
                                 std::to_string(response.status) +
                                 ") is not a JSON object: " + std::string(Trim(response.body)));
  }
  return parsed;
}

}  // namespace

std::string ChErrorMessage(std::string_view body) {
  const std::string_view trimmed = Trim(body);
  const json parsed = json::parse(trimmed, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array() || parsed.empty() ||
      !std::all_of(parsed.begin(), parsed.end(), [](const json& e) { return e.is_string(); })) {
    return std::string(trimmed);
  }
  std::string message;
  for (size_t i = 0; i < parsed.size(); ++i) {
    const std::string& part = parsed[i].get_ref<const std::string&>();
    if (i == 0 && part == kFromApi && parsed.size() > 1) continue;
    if (!message.empty()) message += ": ";
    message += part;
  }
  return message;
}

api::Status ChResponseStatus(std::string_view endpoint, const ChHttpResponse& response) {
  const int code = response.status;
  if (code >= 200 && code <= 299) return api::Status::Ok();
  std::string message = ChErrorMessage(response.body);
  message = std::string(endpoint) + ": " + (message.empty() ? "no error message" : message) +
            " (HTTP " + std::to_string(code) + ")";
  switch (code) {
    case 404:
    case 409:
    case 500:
      return api::Status::FailedPrecondition(std::move(message));
    case 429:
    case 503:
      return api::Status::Unavailable(std::move(message));
    default:
      break;
  }
  if (code >= 400 && code <= 499) return api::Status::InvalidArgument(std::move(message));
  return api::Status::Internal(std::move(message));
}

api::StatusOr<ChHttpResponse> ChApiClient::Call(std::string_view method, std::string_view endpoint,
                                                const std::optional<std::string>& body,
                                                Deadline deadline) {
  api::StatusOr<ChHttpResponse> response = transport_.Request(method, endpoint, body, deadline);
  if (!response.ok()) return response.status();
  if (api::Status s = ChResponseStatus(endpoint, *response); !s.ok()) return s;
  return response;
}

api::Status ChApiClient::Put(std::string_view endpoint, Deadline deadline) {
  api::StatusOr<ChHttpResponse> response = Call("PUT", endpoint, std::nullopt, deadline);
  return response.ok() ? api::Status::Ok() : response.status();
}

api::StatusOr<std::string> ChApiClient::Ping(Deadline deadline) {
  api::StatusOr<ChHttpResponse> response = Call("GET", "vmm.ping", std::nullopt, deadline);
  if (!response.ok()) return response.status();
  api::StatusOr<json> body = JsonObject("vmm.ping", *response);
  if (!body.ok()) return body.status();
  auto version = body->find("version");
  if (version == body->end() || !version->is_string()) {
    return api::Status::Internal("vmm.ping: the answer has no \"version\": " + body->dump());
  }
  return version->get<std::string>();
}

api::Status ChApiClient::Create(const nlohmann::json& config, Deadline deadline) {
  api::StatusOr<ChHttpResponse> response = Call("PUT", "vm.create", config.dump(), deadline);
  return response.ok() ? api::Status::Ok() : response.status();
}

api::Status ChApiClient::Boot(Deadline deadline) { return Put("vm.boot", deadline); }
api::Status ChApiClient::Pause(Deadline deadline) { return Put("vm.pause", deadline); }
api::Status ChApiClient::Resume(Deadline deadline) { return Put("vm.resume", deadline); }
api::Status ChApiClient::PowerButton(Deadline deadline) { return Put("vm.power-button", deadline); }
api::Status ChApiClient::ShutdownVm(Deadline deadline) { return Put("vm.shutdown", deadline); }
api::Status ChApiClient::ShutdownVmm(Deadline deadline) { return Put("vmm.shutdown", deadline); }

api::StatusOr<ChVmInfo> ChApiClient::Info(Deadline deadline) {
  api::StatusOr<ChHttpResponse> response = Call("GET", "vm.info", std::nullopt, deadline);
  if (!response.ok()) return response.status();
  api::StatusOr<json> body = JsonObject("vm.info", *response);
  if (!body.ok()) return body.status();
  auto state = body->find("state");
  if (state == body->end() || !state->is_string()) {
    return api::Status::Internal("vm.info: the answer has no \"state\"");
  }
  ChVmInfo info;
  info.state = state->get<std::string>();
  if (auto config = body->find("config"); config != body->end()) info.config = *config;
  return info;
}

}  // namespace vmlet::drivers
