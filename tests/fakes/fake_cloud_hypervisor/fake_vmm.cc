#include "tests/fakes/fake_cloud_hypervisor/fake_vmm.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace vmlet::testing::fake_ch {
namespace {

using nlohmann::json;

constexpr std::string_view kApiRoot = "/api/v1/";

// How CH's HTTP layer treats each route (vmm/src/api/http/mod.rs and
// http_endpoint.rs).
enum class Kind {
  kCreate,        // VmCreate: PUT with a VmConfig; other methods 400 ["Bad Request"]
  kGet,           // VmInfo, VmmPing: GET; other methods 400 ["Bad Request"]
  kVmmShutdown,   // PUT; other methods 400 ["Bad Request"]
  kGetAction,     // VmActionHandler, GET: PUT 400 ["Bad Request"], others 400 no body
  kPutAction,     // VmActionHandler, bodiless PUT: a body is 400 ["Bad Request"]
  kPutBodyAction  // VmActionHandler, PUT with a required body
};

struct Route {
  std::string_view name;
  Kind kind;
  bool modelled;  // false: the fake checks method and body, then answers 500
};

// CH's HTTP_ROUTES (vm.coredump exists only in guest_debug builds).
constexpr Route kRoutes[] = {
    {"vm.add-device", Kind::kPutBodyAction, false},
    {"vm.add-user-device", Kind::kPutBodyAction, false},
    {"vm.add-disk", Kind::kPutBodyAction, false},
    {"vm.add-fs", Kind::kPutBodyAction, false},
    {"vm.add-generic-vhost-user", Kind::kPutBodyAction, false},
    {"vm.add-net", Kind::kPutBodyAction, false},
    {"vm.add-pmem", Kind::kPutBodyAction, false},
    {"vm.add-vdpa", Kind::kPutBodyAction, false},
    {"vm.add-vsock", Kind::kPutBodyAction, false},
    {"vm.boot", Kind::kPutAction, true},
    {"vm.counters", Kind::kGetAction, true},
    {"vm.create", Kind::kCreate, true},
    {"vm.delete", Kind::kPutAction, true},
    {"vm.info", Kind::kGet, true},
    {"vm.nmi", Kind::kPutAction, true},
    {"vm.pause", Kind::kPutAction, true},
    {"vm.power-button", Kind::kPutAction, true},
    {"vm.reboot", Kind::kPutAction, true},
    {"vm.receive-migration", Kind::kPutBodyAction, false},
    {"vm.remove-device", Kind::kPutBodyAction, false},
    {"vm.resize", Kind::kPutBodyAction, false},
    {"vm.resize-disk", Kind::kPutBodyAction, false},
    {"vm.resize-zone", Kind::kPutBodyAction, false},
    {"vm.restore", Kind::kPutBodyAction, false},
    {"vm.resume", Kind::kPutAction, true},
    {"vm.send-migration", Kind::kPutBodyAction, false},
    {"vm.shutdown", Kind::kPutAction, true},
    {"vm.snapshot", Kind::kPutBodyAction, false},
    {"vmm.ping", Kind::kGet, true},
    {"vmm.shutdown", Kind::kVmmShutdown, true},
};

const Route* FindRoute(std::string_view name) {
  for (const Route& route : kRoutes) {
    if (route.name == name) return &route;
  }
  return nullptr;
}

// The route name of `path` ("/api/v1/vm.boot" -> "vm.boot"); "" when none.
std::string EndpointName(const std::string& path) {
  if (path.rfind(kApiRoot, 0) != 0) return "";
  const std::string name = path.substr(kApiRoot.size());
  return FindRoute(name) ? name : "";
}

HttpResponse ErrorResponse(int status, const std::vector<std::string>& chain) {
  HttpResponse response;
  response.status = status;
  response.body = json(chain).dump();
  return response;
}

HttpResponse BadRequest() { return ErrorResponse(400, {"Bad Request"}); }

HttpResponse EmptyResponse(int status) {
  HttpResponse response;
  response.status = status;
  return response;
}

// Uses up one injection; false once a limited one is spent.
bool Consume(std::optional<int>& times) {
  if (!times) return true;
  if (*times <= 0) return false;
  --*times;
  return true;
}

void WriteAll(int fd, const std::string& text) {
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    written += static_cast<size_t>(n);
  }
}

// A `serial`/`console`-style member of the config, or null.
const json* Member(const json& object, const char* name) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(name);
  return it == object.end() ? nullptr : &*it;
}

}  // namespace

struct FakeVmm::PendingCall {
  HttpRequest request;
  HttpServer::Responder respond;
  TimePoint due;
  std::chrono::milliseconds delay;
};

FakeVmm::FakeVmm(FakeVmmOptions options, const OpenApiValidator& validator, EventMonitor* events,
                 int request_log_fd)
    : options_(std::move(options)),
      validator_(validator),
      events_(events),
      request_log_fd_(request_log_fd) {}

FakeVmm::~FakeVmm() { CloseSerial(); }

bool FakeVmm::IsEndpoint(std::string_view name) { return FindRoute(name) != nullptr; }

void FakeVmm::Handle(const HttpRequest& request, TimePoint now, HttpServer::Responder respond) {
  const std::string name = EndpointName(request.path);
  if (auto delay = options_.delays.find(name);
      delay != options_.delays.end() && Consume(delay->second.times)) {
    pending_ = std::make_unique<PendingCall>(
        PendingCall{request, std::move(respond), now + delay->second.delay, delay->second.delay});
    return;
  }
  Finish(request, now, respond, std::nullopt);
}

void FakeVmm::Finish(const HttpRequest& request, TimePoint now,
                     const HttpServer::Responder& respond,
                     std::optional<std::chrono::milliseconds> delayed_by) {
  // One line per request, keys in reading order.
  nlohmann::ordered_json log = nlohmann::ordered_json::object();
  log["method"] = request.method;
  log["path"] = request.path;
  if (!request.body) {
    log["body"] = nullptr;
  } else {
    log["body"] = nlohmann::ordered_json::parse(*request.body, nullptr, /*allow_exceptions=*/false);
    if (log["body"].is_discarded()) log["body"] = *request.body;
  }
  log["valid"] = true;
  log["errors"] = nlohmann::ordered_json::array();
  if (delayed_by) log["fault"] = "delay " + std::to_string(delayed_by->count()) + "ms";
  const HttpResponse response = Serve(request, now, log);
  log["status"] = response.status;
  WriteLog(log);
  respond(response);
}

HttpResponse FakeVmm::Serve(const HttpRequest& request, TimePoint now,
                            nlohmann::ordered_json& log) {
  const std::string name = EndpointName(request.path);
  if (name.empty()) return ErrorResponse(404, {"Not Found"});
  const Route& route = *FindRoute(name);
  const bool get = request.method == "GET";
  const bool put = request.method == "PUT";

  // Method discipline, exactly as CH's handlers apply it.
  switch (route.kind) {
    case Kind::kCreate:
    case Kind::kVmmShutdown:
      if (!put) return BadRequest();
      break;
    case Kind::kGet:
      if (!get) return BadRequest();
      break;
    case Kind::kGetAction:
      if (put) return BadRequest();
      if (!get) return EmptyResponse(400);
      break;
    case Kind::kPutAction:
    case Kind::kPutBodyAction:
      if (get) return BadRequest();
      if (!put) return EmptyResponse(400);
      break;
  }

  // The body: present where the handler wants one, and valid per the spec.
  json body;
  const bool wants_body = route.kind == Kind::kCreate || route.kind == Kind::kPutBodyAction;
  if (wants_body) {
    if (!request.body) {
      log["valid"] = false;
      log["errors"].push_back("$: required (the request has no body)");
      return route.kind == Kind::kCreate ? EmptyResponse(400) : BadRequest();
    }
    body = json::parse(*request.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) {
      log["valid"] = false;
      log["errors"].push_back("$: not JSON");
      return ErrorResponse(400, {"Failed to deserialize JSON", "the body is not valid JSON"});
    }
    const std::string spec_path = "/" + name;
    if (validator_.RequestBodyOf(spec_path, "put").declared) {
      const OpenApiValidator::Result result =
          validator_.ValidateRequestBody(spec_path, "put", body);
      if (!result.warnings.empty()) log["warnings"] = result.warnings;
      if (!result.ok()) {
        log["valid"] = false;
        log["errors"] = result.violations;
        std::vector<std::string> chain = {"Failed to deserialize JSON"};
        chain.insert(chain.end(), result.violations.begin(), result.violations.end());
        return ErrorResponse(400, chain);
      }
    }
  } else if (request.body && route.kind == Kind::kPutAction) {
    // CH's bodiless PUT handlers refuse any body, even "{}" (GET handlers
    // and vmm.shutdown ignore one).
    log["valid"] = false;
    log["errors"].push_back("$: " + name + " takes no body");
    return BadRequest();
  }

  if (options_.crash_on.count(name)) {
    log["fault"] = "crash";
    log["status"] = nullptr;
    WriteLog(log);
    ::kill(::getpid(), SIGKILL);
  }
  if (auto failure = options_.failures.find(name);
      failure != options_.failures.end() && Consume(failure->second.times)) {
    log["fault"] = "fail " + std::to_string(failure->second.status);
    return ErrorResponse(
        failure->second.status,
        {"Error from API", "fake-cloud-hypervisor: injected failure (--fake-fail " + name + "=" +
                               std::to_string(failure->second.status) + ")"});
  }
  if (!route.modelled) {
    return ErrorResponse(500, {"Error from API", "fake-cloud-hypervisor does not model " + name});
  }
  return Execute(name, body, now);
}

HttpResponse FakeVmm::Execute(const std::string& name, const json& body, TimePoint now) {
  if (name == "vmm.ping") {
    HttpResponse response;
    response.body = json{{"build_version", options_.build_version},
                         {"version", options_.version},
                         {"pid", static_cast<int64_t>(::getpid())},
                         {"features", json::array({"kvm"})}}
                        .dump();
    return response;
  }
  if (name == "vm.create") {
    if (state_.created()) return Answer(state_.Create(), now);
    config_ = body;
    // CH opens the console files when it stores the config.
    if (std::optional<std::string> error = OpenSerial()) {
      config_ = nullptr;
      return ErrorResponse(500, {"Error from API", "The VM could not be created",
                                 "Error creating console devices", *error});
    }
    return Answer(state_.Create(), now);
  }
  if (name == "vm.boot") {
    const bool can_check = state_.created() && !state_.has_vm();
    const Outcome outcome = state_.Boot(can_check ? BootProblem() : std::nullopt);
    HttpResponse response = Answer(outcome, now);
    if (outcome.ok()) StartGuest(now);
    return response;
  }
  if (name == "vm.pause") {
    const Outcome outcome = state_.Pause();
    if (outcome.ok()) FreezeGuest(now);
    return Answer(outcome, now);
  }
  if (name == "vm.resume") {
    const Outcome outcome = state_.Resume();
    HttpResponse response = Answer(outcome, now);
    if (outcome.ok()) ThawGuest(now);
    return response;
  }
  if (name == "vm.shutdown") {
    const Outcome outcome = state_.Shutdown();
    HttpResponse response = Answer(outcome, now);
    if (outcome.ok()) StopGuest();
    return response;
  }
  if (name == "vm.reboot") {
    const Outcome outcome = state_.Reboot();
    HttpResponse response = Answer(outcome, now);
    if (outcome.ok()) {
      StopGuest();
      StartGuest(now);
    }
    return response;
  }
  if (name == "vm.power-button") {
    const Outcome outcome = state_.PowerButton();
    if (outcome.ok() && !options_.ignore_power_button && guest_.phase != GuestPhase::kOff) {
      if (state_.state() == VmState::kPaused) {
        guest_.button_pressed_while_paused = true;  // the guest sees it on resume
      } else if (!guest_.poweroff_at) {
        guest_.poweroff_at = now + options_.poweroff_delay;
      }
    }
    return Answer(outcome, now);
  }
  if (name == "vm.nmi") return Answer(state_.Nmi(), now);
  if (name == "vm.counters") return Answer(state_.Counters(), now, 200, "{}");
  if (name == "vm.info") {
    const Outcome outcome = state_.Info();
    return Answer(outcome, now, 200, outcome.ok() ? VmInfo().dump() : "");
  }
  if (name == "vm.delete") {
    const Outcome outcome = state_.Delete();
    StopGuest();
    config_ = nullptr;
    return Answer(outcome, now);
  }
  if (name == "vmm.shutdown") {
    const Outcome outcome = state_.VmmShutdown();
    StopGuest();
    config_ = nullptr;
    exit_requested_ = true;
    // CH answers 200 with an empty body, although the spec says 204.
    return Answer(outcome, now, 200, "");
  }
  return ErrorResponse(500, {"Error from API", "fake-cloud-hypervisor does not model " + name});
}

HttpResponse FakeVmm::Answer(const Outcome& outcome, TimePoint now, int success_status,
                             std::string success_body) {
  Emit(outcome.events, now);
  if (outcome.error) return ErrorResponse(outcome.error->status, outcome.error->chain);
  HttpResponse response;
  response.status = success_status;
  response.body = std::move(success_body);
  return response;
}

void FakeVmm::Emit(const std::vector<VmmEvent>& events, TimePoint now) {
  if (!events_) return;
  for (const VmmEvent& event : events) events_->Emit(event, now);
}

void FakeVmm::LogMalformed(const std::string& reason) {
  WriteLog(nlohmann::ordered_json{{"malformed", reason}, {"valid", false}, {"status", 400}});
}

std::optional<FakeVmm::TimePoint> FakeVmm::NextDeadline() const {
  std::optional<TimePoint> next;
  auto consider = [&next](const std::optional<TimePoint>& t) {
    if (t && (!next || *t < *next)) next = t;
  };
  if (pending_) consider(pending_->due);
  consider(guest_.ready_at);
  consider(guest_.poweroff_at);
  return next;
}

void FakeVmm::RunDue(TimePoint now) {
  if (exit_requested_) return;
  if (pending_ && pending_->due <= now) {
    std::unique_ptr<PendingCall> call = std::move(pending_);
    Finish(call->request, now, call->respond, call->delay);
  }
  if (guest_.ready_at && *guest_.ready_at <= now) GuestReady(now);
  if (guest_.poweroff_at && *guest_.poweroff_at <= now) GuestPowerOff(now);
}

void FakeVmm::Terminate(TimePoint now) {
  if (exit_requested_) return;
  pending_.reset();  // a call still being "worked on" is never answered
  Emit(state_.VmmShutdown().events, now);
  StopGuest();
  config_ = nullptr;
  exit_requested_ = true;
}

std::optional<std::string> FakeVmm::OpenSerial() {
  CloseSerial();
  const json* serial = Member(config_, "serial");
  const json* mode = serial ? Member(*serial, "mode") : nullptr;
  const json* file = serial ? Member(*serial, "file") : nullptr;
  if (!mode || *mode != "File" || !file || !file->is_string()) return std::nullopt;
  const std::string path = file->get<std::string>();
  serial_fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (serial_fd_ < 0) return "cannot create serial file " + path + ": " + std::strerror(errno);
  return std::nullopt;
}

void FakeVmm::CloseSerial() {
  if (serial_fd_ >= 0) ::close(serial_fd_);
  serial_fd_ = -1;
}

void FakeVmm::WriteSerial(const std::string& text) {
  if (serial_fd_ >= 0) WriteAll(serial_fd_, text);
}

std::string FakeVmm::GuestTimestamp(TimePoint now) const {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now - guest_.booted_at).count();
  char text[32];
  std::snprintf(text, sizeof(text), "[%5lld.%06lld]", static_cast<long long>(micros / 1000000),
                static_cast<long long>(micros % 1000000));
  return text;
}

void FakeVmm::StartGuest(TimePoint now) {
  // A boot after vm.shutdown re-creates the console files, as CH does.
  if (serial_fd_ < 0) OpenSerial();
  guest_ = Guest{};
  guest_.phase = GuestPhase::kBooting;
  guest_.booted_at = now;
  std::string cmdline;
  if (const json* payload = Member(config_, "payload")) {
    if (const json* text = Member(*payload, "cmdline"); text && text->is_string()) {
      cmdline = text->get<std::string>();
    }
  }
  WriteSerial(
      "[    0.000000] Linux version 6.1.0-fake (fake-cloud-hypervisor) #1 SMP PREEMPT_DYNAMIC\r\n"
      "[    0.000000] Command line: " +
      cmdline +
      "\r\n"
      "[    0.000000] fake-cloud-hypervisor: a simulated guest; no guest code runs\r\n"
      "[    0.104213] Run /init as init process\r\n");
  if (options_.boot_delay.count() <= 0) {
    GuestReady(now);
  } else {
    guest_.ready_at = now + options_.boot_delay;
  }
}

void FakeVmm::StopGuest() {
  guest_ = Guest{};
  CloseSerial();
}

void FakeVmm::FreezeGuest(TimePoint now) {
  if (guest_.ready_at) guest_.ready_left = *guest_.ready_at - now;
  if (guest_.poweroff_at) guest_.poweroff_left = *guest_.poweroff_at - now;
  guest_.ready_at.reset();
  guest_.poweroff_at.reset();
}

void FakeVmm::ThawGuest(TimePoint now) {
  if (guest_.ready_left) guest_.ready_at = now + *guest_.ready_left;
  if (guest_.poweroff_left) guest_.poweroff_at = now + *guest_.poweroff_left;
  guest_.ready_left.reset();
  guest_.poweroff_left.reset();
  if (guest_.button_pressed_while_paused && !guest_.poweroff_at) {
    guest_.poweroff_at = now + options_.poweroff_delay;
  }
  guest_.button_pressed_while_paused = false;
}

void FakeVmm::GuestReady(TimePoint now) {
  (void)now;
  guest_.ready_at.reset();
  guest_.phase = GuestPhase::kReady;
  WriteSerial("VMRS_READY " + options_.ready_ip + "\r\n");
}

void FakeVmm::GuestPowerOff(TimePoint now) {
  WriteSerial(GuestTimestamp(now) + " reboot: Power down\r\n");
  Emit(state_.GuestExit(options_.no_shutdown).events, now);
  StopGuest();
  if (!options_.no_shutdown) {
    config_ = nullptr;
    exit_requested_ = true;
  }
}

std::optional<std::string> FakeVmm::BootProblem() const {
  const json* payload = Member(config_, "payload");
  if (!payload || !(payload->contains("kernel") || payload->contains("firmware") ||
                    payload->contains("igvm"))) {
    return "No kernel or firmware specified in payload";
  }
  const json* fs = Member(config_, "fs");
  if (fs && fs->is_array() && !fs->empty()) {
    const json* memory = Member(config_, "memory");
    const json* shared = memory ? Member(*memory, "shared") : nullptr;
    if (!shared || *shared != true) {
      return "Using vhost-user requires using shared memory or huge pages (memory.shared)";
    }
  }
  return std::nullopt;
}

json FakeVmm::VmInfo() const {
  json config = config_;
  // CH answers with its parsed config, so the defaults are filled in.
  const json defaults = {
      {"cpus", {{"boot_vcpus", 1}, {"max_vcpus", 1}}},
      {"memory", {{"size", 536870912}}},
      {"rng", {{"src", "/dev/urandom"}}},
      {"serial", {{"mode", "Null"}}},
      {"console", {{"mode", "Tty"}}},
      {"iommu", false},
      {"watchdog", false},
      {"pvpanic", false},
  };
  for (const auto& [key, value] : defaults.items()) {
    if (!config.contains(key)) config[key] = value;
  }
  json info = {{"config", config},
               {"state", std::string(VmStateName(state_.state()))},
               {"memory_actual_size", config["memory"].value("size", 536870912LL)}};
  if (state_.has_vm()) {
    json tree = json::object();
    int slot = 1;
    auto add = [&tree, &slot](const std::string& id) {
      char bdf[16];
      std::snprintf(bdf, sizeof(bdf), "0000:00:%02x.0", slot++);
      tree[id] = {
          {"id", id}, {"resources", json::array()}, {"children", json::array()}, {"pci_bdf", bdf}};
    };
    const std::pair<const char*, const char*> kinds[] = {
        {"disks", "_disk"}, {"net", "_net"}, {"fs", "_fs"}, {"pmem", "_pmem"}};
    for (const auto& [member, prefix] : kinds) {
      const json* devices = Member(config, member);
      if (!devices || !devices->is_array()) continue;
      for (size_t i = 0; i < devices->size(); ++i) {
        const json* id = Member((*devices)[i], "id");
        add(id && id->is_string() ? id->get<std::string>() : prefix + std::to_string(i));
      }
    }
    if (Member(config, "vsock")) add("_vsock0");
    add("_rng");
    info["device_tree"] = tree;
  }
  return info;
}

void FakeVmm::WriteLog(const nlohmann::ordered_json& entry) {
  if (request_log_fd_ >= 0) WriteAll(request_log_fd_, entry.dump() + "\n");
}

}  // namespace vmlet::testing::fake_ch
