// fake-cloud-hypervisor: a stand-in for the `cloud-hypervisor` VMM process,
// for testing vmlet's Cloud Hypervisor driver without KVM. It takes CH's
// command line, serves CH's REST API on the API socket with CH's framing and
// status codes, checks every request body against the OpenAPI spec, keeps
// CH's VM state machine, writes CH's event-monitor stream, and simulates a
// guest that prints `VMRS_READY <ip>` on its serial file and powers off on
// the ACPI power button. Flags named --fake-* inject faults; see --help.
//
// Process behaviour, as CH v53 (cloud-hypervisor/src/main.rs):
//  - umask 077; the event-monitor file is created and truncated at start and
//    gets "vmm starting" before the API socket exists;
//  - the API socket is bound under an OFD lock on "<socket>.lock": a stale
//    socket file left by a crash is removed; a socket whose lock is held by
//    a live instance makes the start fail (exit 1). --fake-legacy-socket
//    behaves as CH up to v52 instead: no lock, a leftover file fails bind;
//  - exit status 0 after vmm.shutdown, after the guest powers off (unless
//    --no-shutdown), and on SIGTERM/SIGINT (handled as vmm.shutdown); the
//    socket file is removed on every such exit; 1 when it cannot start.
// One thread; no child processes.

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/fakes/fake_cloud_hypervisor/event_monitor.h"
#include "tests/fakes/fake_cloud_hypervisor/fake_vmm.h"
#include "tests/fakes/fake_cloud_hypervisor/http_server.h"
#include "tests/fakes/fake_cloud_hypervisor/openapi_validator.h"

#ifndef FAKE_CH_DEFAULT_OPENAPI
#error "FAKE_CH_DEFAULT_OPENAPI must name the spec file (set by CMake)"
#endif

namespace vmlet::testing::fake_ch {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr char kVersion[] = "cloud-hypervisor v53.0.0-fake";

// Logs to stderr (or --log-file), one line per message, as CH's logger does.
class Log {
 public:
  void Open(const std::string& path) {
    if (!path.empty()) file_ = std::fopen(path.c_str(), "we");
  }
  ~Log() {
    if (file_) std::fclose(file_);
  }
  void Line(const std::string& text) {
    std::FILE* out = file_ ? file_ : stderr;
    std::fprintf(out, "fake-cloud-hypervisor: %s\n", text.c_str());
    std::fflush(out);
  }

 private:
  std::FILE* file_ = nullptr;
};

// Logs `message` and returns `status`, for the early exits of Run().
int Fail(Log& log, const std::string& message, int status) {
  log.Line(message);
  return status;
}

// CH's OptionParser for "key=value,key=value" with the given keys; nullopt
// when `text` is not of that form.
std::optional<std::map<std::string, std::string>> ParseOptions(
    const std::string& text, const std::vector<std::string>& keys) {
  std::map<std::string, std::string> options;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const size_t equals = item.find('=');
    if (equals == std::string::npos) return std::nullopt;
    const std::string key = item.substr(0, equals);
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) return std::nullopt;
    options[key] = item.substr(equals + 1);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return options;
}

std::optional<int> ParseInt(const std::string& text) {
  if (text.empty() || text.size() > 9) return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  return std::stoi(text);
}

// "NAME=VALUE[:TIMES]" for a fault flag; `error` says what is wrong.
struct FaultSpec {
  std::string name;
  int value = 0;
  std::optional<int> times;
};
std::optional<FaultSpec> ParseFault(const std::string& text, std::string& error) {
  const size_t equals = text.find('=');
  if (equals == std::string::npos) {
    error = "expected METHOD=VALUE[:TIMES], got \"" + text + "\"";
    return std::nullopt;
  }
  FaultSpec spec;
  spec.name = text.substr(0, equals);
  if (!FakeVmm::IsEndpoint(spec.name)) {
    error = "\"" + spec.name + "\" is not a Cloud Hypervisor API endpoint (e.g. vm.boot)";
    return std::nullopt;
  }
  std::string value = text.substr(equals + 1);
  if (const size_t colon = value.find(':'); colon != std::string::npos) {
    spec.times = ParseInt(value.substr(colon + 1));
    if (!spec.times) {
      error = "bad TIMES in \"" + text + "\"";
      return std::nullopt;
    }
    value = value.substr(0, colon);
  }
  std::optional<int> number = ParseInt(value);
  if (!number) {
    error = "bad VALUE in \"" + text + "\"";
    return std::nullopt;
  }
  spec.value = *number;
  return spec;
}

// Binds and listens on `path` the way CH v53 does (see the file comment).
// Returns the listening socket, or -1 with `error` set. `lock_fd` receives
// the lock file's descriptor (-1 with `legacy`), held until exit.
int BindApiSocket(const std::string& path, bool legacy, int& lock_fd, std::string& error) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    error = "API socket path is empty or longer than " +
            std::to_string(sizeof(address.sun_path) - 1) + " bytes: " + path;
    return -1;
  }
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);

  if (!legacy) {
    const std::string lock_path = path + ".lock";
    lock_fd = ::open(lock_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd < 0) {
      error = "Error creating API server socket: " + lock_path + ": " + std::strerror(errno);
      return -1;
    }
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    if (::fcntl(lock_fd, F_OFD_SETLK, &lock) < 0) {
      error =
          (errno == EAGAIN || errno == EACCES)
              ? "Socket \"" + path + "\" is already in use by another running instance"
              : "Error creating API server socket: lock " + lock_path + ": " + std::strerror(errno);
      return -1;
    }
    // We hold the lock, so a socket here was left by a run that crashed.
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(path.c_str());
  }

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("Error creating API server socket: ") + std::strerror(errno);
    return -1;
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) < 0 ||
      ::listen(fd, 128) < 0) {
    error = "Error creating API server socket: " + path + ": " + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

int Run(int argc, char** argv) {
  ::umask(077);  // as CH: the files it creates are for its user only

  CLI::App app{"fake-cloud-hypervisor: a stand-in for the cloud-hypervisor VMM (no KVM)",
               "cloud-hypervisor"};
  app.set_version_flag("-V,--version", kVersion);
  std::string api_socket_arg, event_monitor_arg, log_file, seccomp = "true";
  bool no_shutdown = false;
  int verbosity = 0;
  app.add_option("--api-socket", api_socket_arg,
                 "HTTP API socket (UNIX domain socket): path=</path/to/a/file>, fd=<fd>, or a "
                 "bare path")
      ->required();
  app.add_option("--event-monitor", event_monitor_arg,
                 "File to report events on: path=</path/to/a/file> or fd=<fd>");
  app.add_flag("--no-shutdown", no_shutdown, "Do not exit the VMM when the guest shuts down");
  app.add_option("--log-file", log_file, "Log file. Standard error is used if not specified");
  app.add_flag("-v", verbosity, "Sets the level of debugging output (logs each request)");
  app.add_option("--seccomp", seccomp, "Accepted and ignored")
      ->check(CLI::IsMember({"true", "false", "log"}));

  FakeVmmOptions options;
  std::string openapi_path = FAKE_CH_DEFAULT_OPENAPI;
  std::string request_log_path, overflow = "reject";
  int boot_delay_ms = static_cast<int>(options.boot_delay.count());
  int poweroff_delay_ms = static_cast<int>(options.poweroff_delay.count());
  bool legacy_socket = false;
  std::vector<std::string> delay_specs, fail_specs, crash_specs;
  app.add_option("--fake-openapi", openapi_path, "OpenAPI spec to validate request bodies with")
      ->capture_default_str();
  app.add_option("--fake-ready-ip", options.ready_ip,
                 "Address in the guest's \"VMRS_READY <ip>\" serial line")
      ->capture_default_str();
  app.add_option("--fake-boot-delay-ms", boot_delay_ms,
                 "Guest boot time, vm.boot to the marker line (paused time does not count)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--fake-poweroff-delay-ms", poweroff_delay_ms, "Power button to guest poweroff")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--fake-delay", delay_specs,
                 "METHOD=MS[:TIMES]: answer that endpoint (e.g. vm.boot) after MS milliseconds; "
                 "the server serves nobody else meanwhile, as CH's blocks")
      ->allow_extra_args(false);
  app.add_option("--fake-fail", fail_specs,
                 "METHOD=CODE[:TIMES]: answer that endpoint with CODE (400..599) and a JSON "
                 "array-of-strings error body, without effect")
      ->allow_extra_args(false);
  app.add_option("--fake-crash-on", crash_specs,
                 "METHOD: the process kills itself (SIGKILL) instead of answering that endpoint")
      ->allow_extra_args(false);
  app.add_flag("--fake-ignore-power-button", options.ignore_power_button,
               "The guest ignores vm.power-button (answered 204; it keeps running)");
  app.add_option("--fake-request-log", request_log_path,
                 "Append one JSON line per request: method, path, body, valid, errors, "
                 "warnings, status, fault");
  app.add_option("--fake-overflow", overflow,
                 "A connection beyond the 10th: reject (503 + close, as micro-http's code does) "
                 "or backlog (left unaccepted until one closes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"reject", "backlog"}));
  app.add_flag("--fake-legacy-socket", legacy_socket,
               "Socket handling of CH <= v52: no lock file, a leftover socket file fails bind");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  Log log;
  log.Open(log_file);
  options.boot_delay = milliseconds(boot_delay_ms);
  options.poweroff_delay = milliseconds(poweroff_delay_ms);
  options.no_shutdown = no_shutdown;
  std::string error;
  for (const std::string& text : delay_specs) {
    std::optional<FaultSpec> spec = ParseFault(text, error);
    if (!spec) return Fail(log, "--fake-delay: " + error, 2);
    options.delays[spec->name] = {milliseconds(spec->value), spec->times};
  }
  for (const std::string& text : fail_specs) {
    std::optional<FaultSpec> spec = ParseFault(text, error);
    if (spec && (spec->value < 400 || spec->value > 599)) error = "CODE must be 400..599";
    if (!spec || spec->value < 400 || spec->value > 599)
      return Fail(log, "--fake-fail: " + error, 2);
    options.failures[spec->name] = {spec->value, spec->times};
  }
  for (const std::string& name : crash_specs) {
    if (!FakeVmm::IsEndpoint(name)) {
      return Fail(log, "--fake-crash-on: \"" + name + "\" is not an API endpoint", 2);
    }
    options.crash_on.insert(name);
  }

  // --api-socket: CH takes fd=, path=, or else the whole value as a path.
  std::optional<std::string> socket_path;
  std::optional<int> socket_fd;
  if (auto parsed = ParseOptions(api_socket_arg, {"path", "fd"})) {
    if (parsed->count("fd")) {
      socket_fd = ParseInt((*parsed)["fd"]);
      if (!socket_fd) return Fail(log, "Error parsing --api-socket: bad fd", 1);
    } else if (parsed->count("path")) {
      socket_path = (*parsed)["path"];
    }
  }
  if (!socket_fd && !socket_path) socket_path = api_socket_arg;

  std::unique_ptr<OpenApiValidator> validator = OpenApiValidator::Load(openapi_path, error);
  if (!validator) return Fail(log, error, 1);

  // Signals are taken through a signalfd, so they are blocked before
  // anything else can run.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  ::sigprocmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) return Fail(log, std::string("signalfd: ") + std::strerror(errno), 1);

  const Clock::time_point start = Clock::now();
  std::unique_ptr<EventMonitor> monitor;
  if (!event_monitor_arg.empty()) {
    auto parsed = ParseOptions(event_monitor_arg, {"path", "fd"});
    if (parsed && parsed->count("fd")) {
      std::optional<int> fd = ParseInt((*parsed)["fd"]);
      if (!fd) return Fail(log, "Error parsing --event-monitor: bad fd", 1);
      monitor = std::make_unique<EventMonitor>(*fd, start);
    } else if (parsed && parsed->count("path")) {
      monitor = EventMonitor::OpenPath((*parsed)["path"], start, error);
      if (!monitor) return Fail(log, "Error doing event monitor I/O: " + error, 1);
    } else {
      return Fail(log, "Error parsing --event-monitor: path or fd required", 1);
    }
    monitor->Emit({"vmm", "starting"}, Clock::now());
  }

  int request_log_fd = -1;
  if (!request_log_path.empty()) {
    request_log_fd =
        ::open(request_log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (request_log_fd < 0) {
      return Fail(log, "--fake-request-log " + request_log_path + ": " + std::strerror(errno), 1);
    }
  }

  int lock_fd = -1;
  int listen_fd = -1;
  if (socket_fd) {
    listen_fd = *socket_fd;
    ::fcntl(listen_fd, F_SETFL, ::fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
  } else {
    listen_fd = BindApiSocket(*socket_path, legacy_socket, lock_fd, error);
    if (listen_fd < 0) return Fail(log, error, 1);
  }
  log.Line("pid " + std::to_string(::getpid()) + " serving " +
           (socket_path ? *socket_path : "fd " + std::to_string(*socket_fd)) + ", spec " +
           openapi_path);

  FakeVmm vmm(options, *validator, monitor.get(), request_log_fd);
  HttpServer::Options server_options;
  server_options.overflow = overflow == "backlog" ? HttpServer::OverflowMode::kBacklog
                                                  : HttpServer::OverflowMode::kReject;
  HttpServer server(
      listen_fd, server_options,
      [&](const HttpRequest& request, HttpServer::Responder respond) {
        if (verbosity > 0) log.Line(request.method + " " + request.path);
        vmm.Handle(request, Clock::now(), std::move(respond));
      },
      [&](const std::string& reason) {
        log.Line("malformed request: " + reason);
        vmm.LogMalformed(reason);
      });

  for (;;) {
    server.ServePending();
    if (vmm.exit_requested()) break;
    milliseconds timeout(-1);
    if (std::optional<Clock::time_point> deadline = vmm.NextDeadline()) {
      const auto left = *deadline - Clock::now();
      // Round up, so the deadline has passed when poll returns.
      timeout = std::max(milliseconds(0), std::chrono::ceil<milliseconds>(left));
    }
    if (server.RunOnce(timeout, signal_fd)) {
      signalfd_siginfo info{};
      [[maybe_unused]] const ssize_t n = ::read(signal_fd, &info, sizeof(info));
      log.Line(std::string("received ") + strsignal(static_cast<int>(info.ssi_signo)) +
               ", shutting down");
      vmm.Terminate(Clock::now());
      break;
    }
    vmm.RunDue(Clock::now());
  }

  // Answers already given (vmm.shutdown's 200) still reach their clients.
  server.FlushAndClose(milliseconds(500));
  if (socket_path) ::unlink(socket_path->c_str());  // while the lock is still held
  if (lock_fd >= 0) ::close(lock_fd);
  if (request_log_fd >= 0) ::close(request_log_fd);
  ::close(signal_fd);
  log.Line("exiting with status 0");
  return 0;
}

}  // namespace
}  // namespace vmlet::testing::fake_ch

int main(int argc, char** argv) { return vmlet::testing::fake_ch::Run(argc, argv); }
