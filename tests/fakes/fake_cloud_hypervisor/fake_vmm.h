#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "tests/fakes/fake_cloud_hypervisor/event_monitor.h"
#include "tests/fakes/fake_cloud_hypervisor/http_server.h"
#include "tests/fakes/fake_cloud_hypervisor/openapi_validator.h"
#include "tests/fakes/fake_cloud_hypervisor/vm_state_machine.h"

namespace vmlet::testing::fake_ch {

// A fault injected on one endpoint; `times` empty means on every call.
struct InjectedDelay {
  std::chrono::milliseconds delay{0};
  std::optional<int> times;
};
struct InjectedFailure {
  int status = 500;
  std::optional<int> times;
};

struct FakeVmmOptions {
  // The address the simulated guest announces: "VMRS_READY <ready_ip>".
  std::string ready_ip = "10.0.2.15";
  // Guest boot time: from vm.boot (or a reboot, or a resume that ends a
  // pause) to the marker line on the serial file. Paused time does not count.
  std::chrono::milliseconds boot_delay{100};
  // From the power button (while running) to the guest powering off.
  std::chrono::milliseconds poweroff_delay{50};
  // The guest does not react to the ACPI power button (a bare initramfs).
  bool ignore_power_button = false;
  // CH's --no-shutdown: a guest poweroff shuts the VM down; the VMM stays.
  bool no_shutdown = false;
  // By endpoint name ("vm.boot"): the call is answered only after `delay`
  // (and the HTTP server serves nobody else meanwhile, as CH's does).
  std::map<std::string, InjectedDelay> delays;
  // By endpoint name: a call that passed method and schema checks is
  // answered with `status` and a JSON array of strings, with no effect.
  std::map<std::string, InjectedFailure> failures;
  // By endpoint name: the process kills itself (SIGKILL) instead of
  // answering, leaving its socket file behind as a crashed VMM does.
  std::set<std::string> crash_on;
  // Reported by vmm.ping.
  std::string version = "53.0.0";
  std::string build_version = "v53.0.0-fake";
};

// The Cloud Hypervisor VMM behind the API socket: routes `/api/v1/<name>`
// requests as CH's HTTP layer does, checks request bodies against the
// OpenAPI spec, drives VmStateMachine, and simulates what a real VMM and
// guest leave behind: event-monitor events, and on the VmConfig's serial file
// (`serial: {mode: File, file: PATH}`) kernel noise, `VMRS_READY <ip>\r\n`
// after the boot delay, and a power-down line when the guest powers off.
//
// Status codes and bodies follow CH:
//  - unknown path: 404 ["Not Found"];
//  - wrong method: 400 ["Bad Request"], or 400 without a body for methods
//    other than GET and PUT on the generic action endpoints;
//  - vm.create without a body: 400 without a body; a body on a bodiless
//    call (vm.boot {}): 400 ["Bad Request"];
//  - a body that is not JSON or breaks the spec: 400 ["Failed to deserialize
//    JSON", <one entry per violation, "$.path: rule">];
//  - vm.info and vm.boot without a config, vm.reboot without a VM: 404;
//    any other failure, wrong-state calls included: 500; error bodies are
//    JSON arrays of strings starting with "Error from API";
//  - vmm.ping, vm.info, vm.counters: 200 + JSON; vmm.shutdown: 200 with an
//    empty body; other successes: 204.
// Endpoints in CH's routing table that the fake does not model (vm.resize,
// vm.add-*, vm.snapshot, ...) check method and body, then answer 500.
//
// Single-threaded; not thread-safe. Does no I/O until called.
class FakeVmm {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `validator` must outlive this. `events` may be null (no --event-monitor)
  // and must outlive this. `request_log_fd` (-1: none) receives one JSON
  // line per request; not owned.
  FakeVmm(FakeVmmOptions options, const OpenApiValidator& validator, EventMonitor* events,
          int request_log_fd);
  ~FakeVmm();
  FakeVmm(const FakeVmm&) = delete;
  FakeVmm& operator=(const FakeVmm&) = delete;

  // True for the endpoint names CH routes ("vm.boot", "vmm.ping", ...).
  static bool IsEndpoint(std::string_view name);

  // Serves one request (an HttpServer::Handler). `respond` is called before
  // this returns, or later from RunDue() when a delay is injected.
  void Handle(const HttpRequest& request, TimePoint now, HttpServer::Responder respond);

  // Records a request the HTTP layer rejected as malformed.
  void LogMalformed(const std::string& reason);

  // When RunDue() next has work (a delayed answer, the guest's marker, its
  // poweroff); empty when there is none.
  std::optional<TimePoint> NextDeadline() const;
  void RunDue(TimePoint now);

  // SIGTERM/SIGINT: CH's exit event, handled as vmm.shutdown (VM shut down
  // and deleted, events emitted); then exit_requested().
  void Terminate(TimePoint now);

  // The VMM has ended (vmm.shutdown answered, guest powered off without
  // --no-shutdown, or Terminate()); the process should exit with status 0.
  bool exit_requested() const { return exit_requested_; }

 private:
  enum class GuestPhase { kOff, kBooting, kReady };
  struct Guest {
    GuestPhase phase = GuestPhase::kOff;
    TimePoint booted_at{};
    std::optional<TimePoint> ready_at;     // while booting and running
    std::optional<TimePoint> poweroff_at;  // power button honoured, running
    // Time left on those clocks while the VM is paused.
    std::optional<std::chrono::steady_clock::duration> ready_left;
    std::optional<std::chrono::steady_clock::duration> poweroff_left;
    bool button_pressed_while_paused = false;
  };
  struct PendingCall;

  void Finish(const HttpRequest& request, TimePoint now, const HttpServer::Responder& respond,
              std::optional<std::chrono::milliseconds> delayed_by);
  HttpResponse Serve(const HttpRequest& request, TimePoint now, nlohmann::ordered_json& log);
  HttpResponse Execute(const std::string& name, const nlohmann::json& body, TimePoint now);
  HttpResponse Answer(const Outcome& outcome, TimePoint now, int success_status = 204,
                      std::string success_body = "");
  void Emit(const std::vector<VmmEvent>& events, TimePoint now);

  std::optional<std::string> OpenSerial();
  void CloseSerial();
  void WriteSerial(const std::string& text);
  void StartGuest(TimePoint now);
  void StopGuest();
  void FreezeGuest(TimePoint now);
  void ThawGuest(TimePoint now);
  void GuestReady(TimePoint now);
  void GuestPowerOff(TimePoint now);
  std::string GuestTimestamp(TimePoint now) const;
  std::optional<std::string> BootProblem() const;
  nlohmann::json VmInfo() const;

  void WriteLog(const nlohmann::ordered_json& entry);

  FakeVmmOptions options_;
  const OpenApiValidator& validator_;
  EventMonitor* events_;
  int request_log_fd_;

  VmStateMachine state_;
  nlohmann::json config_;  // the VmConfig as created; null when none
  int serial_fd_ = -1;
  Guest guest_;
  std::unique_ptr<PendingCall> pending_;
  bool exit_requested_ = false;
};

}  // namespace vmlet::testing::fake_ch
