#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "api/status.h"
#include "drivers/cloud_hypervisor/ch_api_transport.h"
#include "drivers/vm_driver.h"

namespace vmlet::drivers {

// What vm.info says about the VM (the VmInfo schema).
struct ChVmInfo {
  // "Created", "Running", "Paused", "Shutdown" or "BreakPoint".
  std::string state;
  nlohmann::json config;  // the VmConfig as CH holds it (defaults filled in)
};

// The message of a CH error body: CH (v47 and later) sends a JSON array of
// strings, the error chain from outermost to root cause; they are joined
// with ": ", without the leading "Error from API" that every chain starts
// with. Any other body (older servers' plain text, micro-http's own
// `{ "error": ... }`) is kept as it is, trimmed. Empty: "".
std::string ChErrorMessage(std::string_view body);

// The Status for CH's answer `response` to `endpoint`, by status class
// (CH's codes vary by release, so exact codes are
// not relied upon). OK for 2xx. Otherwise the message is
// "<endpoint>: <ChErrorMessage(body)> (HTTP <code>)" and the code:
//   400-499 but 404, 409, 429   InvalidArgument: the request was refused
//                               (a body or a config CH does not accept);
//                               sending it again cannot help.
//   404, 409                    FailedPrecondition: no VM created yet (v53
//                               and later), a duplicate device.
//   429                         Unavailable: CH asks to come back later.
//   500                         FailedPrecondition: CH's answer for a call
//                               in the wrong state (pausing a paused VM) and
//                               for every failure of the VMM's own.
//   503                         Unavailable: the server is full (micro-http's
//                               11th connection) or not serving yet.
//   anything else               Internal.
api::Status ChResponseStatus(std::string_view endpoint, const ChHttpResponse& response);

// The Cloud Hypervisor REST API (its OpenAPI spec; a copy is
// tests/fakes/fake_cloud_hypervisor/cloud-hypervisor-openapi.yaml) on one VMM, as the driver uses
// it. Each call is one request through the transport; the transport's errors (Unavailable,
// DeadlineExceeded, ...) are returned as they are, and CH's answers map by ChResponseStatus().
//
// Thread-safety: that of the transport (none): one caller at a time.
class ChApiClient {
 public:
  // `transport` must outlive the client.
  explicit ChApiClient(ChApiTransport& transport) : transport_(transport) {}

  // GET vmm.ping: the VMM's version ("version", required by the spec).
  // Internal when the answer is not a JSON object with a string "version".
  api::StatusOr<std::string> Ping(Deadline deadline);
  // PUT vm.create with `config` (a VmConfig) as the body.
  api::Status Create(const nlohmann::json& config, Deadline deadline);
  // PUT vm.boot, vm.pause, vm.resume, vm.power-button, vm.shutdown (no body).
  api::Status Boot(Deadline deadline);
  api::Status Pause(Deadline deadline);
  api::Status Resume(Deadline deadline);
  api::Status PowerButton(Deadline deadline);
  api::Status ShutdownVm(Deadline deadline);
  // PUT vmm.shutdown (no body): CH deletes the VM and its process exits.
  // CH answers 200 with an empty body although the spec says 204; both are OK.
  api::Status ShutdownVmm(Deadline deadline);
  // GET vm.info. Internal when the answer is not a JSON object with a string
  // "state".
  api::StatusOr<ChVmInfo> Info(Deadline deadline);

 private:
  // One request; its answer when 2xx, else the Status for it.
  api::StatusOr<ChHttpResponse> Call(std::string_view method, std::string_view endpoint,
                                     const std::optional<std::string>& body, Deadline deadline);
  api::Status Put(std::string_view endpoint, Deadline deadline);

  ChApiTransport& transport_;
};

}  // namespace vmlet::drivers
