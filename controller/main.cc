// vmlet's entry point: the one place that names real implementations and
// wires them together.
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <exception>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "controller/cli.h"
#include "controller/manager.h"
#include "controller/manager_vm_source.h"
#include "controller/manifest_watcher.h"
#include "controller/rate_limiter.h"
#include "controller/state_store.h"
#include "controller/status_api.h"
#include "drivers/cloud_hypervisor/cloud_hypervisor_driver.h"
#include "drivers/fake/fake_vm_driver.h"
#include "drivers/host/linux_proc_fs.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/real_clock.h"
#include "drivers/host/vmm_user.h"
#include "drivers/qemu/qemu_driver.h"
#include "drivers/vmm_identity.h"
#include "manifests/manifest_error.h"
#include "metrics/metered_driver.h"
#include "metrics/metrics_endpoint.h"
#include "metrics/vmlet_metrics.h"

namespace {

using namespace vmlet;

// Holding a pidfd per VMM needs one descriptor per VM: take the hard limit.
void RaiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

// Every value of the `reason` label of vmlet_manifest_errors_total.
std::vector<std::string> ManifestErrorReasons() {
  std::vector<std::string> reasons;
  // ErrorKind's values run from kIo to kUnsupportedByDriver.
  for (int kind = static_cast<int>(manifests::ErrorKind::kIo);
       kind <= static_cast<int>(manifests::ErrorKind::kUnsupportedByDriver); ++kind) {
    reasons.emplace_back(manifests::ErrorKindName(static_cast<manifests::ErrorKind>(kind)));
  }
  return reasons;
}

// The controller's hooks, each feeding its metric (docs/metrics.md).
controller::ReconcilerHooks ReconcilerMetrics(metrics::VmletMetrics& m) {
  controller::ReconcilerHooks hooks;
  hooks.identity_mismatch = [&m](const std::string& driver) { m.CountIdentityMismatch(driver); };
  hooks.boot_duration = [&m](const std::string& driver, double s) { m.ObserveBoot(driver, s); };
  hooks.restarted = [&m](const api::VmKey& key, const std::string& reason) {
    m.CountRestart(key, reason);
  };
  hooks.phase_changed = [&m](const api::VmKey&, const std::string& driver, const std::string& from,
                             const std::string& to, double seconds) {
    m.ObservePhaseTransition(driver, from, to, seconds);
  };
  hooks.forgotten = [&m](const api::VmKey& key) { m.ForgetVm(key); };
  hooks.status = [&m](const api::VmKey& key, const std::string& driver, const std::string& phase,
                      const std::string& desired) { m.SetVmStatus(key, driver, phase, desired); };
  return hooks;
}

controller::WorkQueueMetrics QueueMetrics(metrics::VmletMetrics& m) {
  controller::WorkQueueMetrics hooks;
  hooks.depth = [&m](size_t depth) { m.SetQueueDepth(depth); };
  hooks.add = [&m] { m.CountQueueAdd(); };
  hooks.retry = [&m] { m.CountQueueRetry(); };
  hooks.queue_duration = [&m](double seconds) { m.ObserveQueueDuration(seconds); };
  return hooks;
}

// The manager's collaborators: the manifest directory watched with inotify,
// the work queue's exponential backoff (5 ms doubling to 5 min), and the
// crash-loop jitter from a seeded generator.
controller::Manager::Collaborators ManagerCollaborators(const controller::RunOptions& options) {
  manifests::ParseOptions parse;
  parse.default_driver = options.default_driver;
  parse.image_roots = options.image_roots;
  parse.share_roots = options.share_roots;
  parse.require_node_name = options.require_node_name;
  controller::Manager::Collaborators collaborators;
  collaborators.manifests = std::make_unique<controller::DirectoryManifestWatcher>(
      options.manifests_dir, std::move(parse), manifests::DirectoryWatcher::Options{});
  collaborators.rate_limiter = std::make_unique<controller::ExponentialFailureRateLimiter>(
      std::chrono::milliseconds(5), std::chrono::minutes(5));
  collaborators.jitter = [rng = std::make_shared<std::mt19937_64>(std::random_device{}()),
                          mu = std::make_shared<std::mutex>()] {
    std::lock_guard lock(*mu);
    return std::uniform_real_distribution<double>(1.0, 1.1)(*rng);
  };
  return collaborators;
}

controller::ManagerHooks ManagerMetrics(metrics::VmletMetrics& m) {
  controller::ManagerHooks hooks;
  hooks.reconciled = [&m](std::string_view result, double s) { m.CountReconcile(result, s); };
  hooks.manifest_error = [&m](manifests::ErrorKind kind) {
    m.CountManifestError(manifests::ErrorKindName(kind));
  };
  hooks.manifests = [&m](size_t valid, size_t invalid) {
    m.SetManifestCounts(static_cast<double>(valid), static_cast<double>(invalid));
  };
  hooks.resynced = [&m] { m.MarkResync(); };
  return hooks;
}

// systemd's STATUS= line: how many VMs are in each phase.
std::string StatusLine(const controller::StatusApi& status_api, bool synced) {
  if (!synced) return "Reading the manifest directory";
  std::map<std::string, size_t> phases = status_api.PhaseCounts();
  size_t total = 0;
  std::string detail;
  for (const auto& [phase, count] : phases) {
    total += count;
    detail += (detail.empty() ? ": " : ", ") + std::to_string(count) + " " + phase;
  }
  return std::to_string(total) + (total == 1 ? " VM" : " VMs") + detail;
}

// sd_notify(3) with one message; a no-op when not run by systemd (no
// NOTIFY_SOCKET).
void Notify(const std::string& message) { sd_notify(0, message.c_str()); }

// The main thread waits for SIGTERM/SIGINT; meanwhile it pings systemd's
// watchdog at half its interval (when the unit sets WatchdogSec=) and keeps
// STATUS= current (`status_line`: as last sent). Returns the signal, or 0
// when waiting failed.
int WaitForStopSignal(const sigset_t& signals, const controller::StatusApi& status_api,
                      const controller::Manager& manager, std::string status_line) {
  uint64_t watchdog_usec = 0;
  const bool watchdog = sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0;
  const std::chrono::microseconds tick =
      watchdog ? std::chrono::microseconds(watchdog_usec / 2) : std::chrono::seconds(10);
  if (watchdog) spdlog::info("event=WatchdogEnabled ping_every_ms={}", tick.count() / 1000);
  int signal = 0;
  while (signal <= 0) {
    const timespec timeout{static_cast<time_t>(tick.count() / 1'000'000),
                           static_cast<long>(tick.count() % 1'000'000) * 1000};
    signal = sigtimedwait(&signals, nullptr, &timeout);
    if (signal > 0) break;
    if (errno != EAGAIN && errno != EINTR) {
      spdlog::critical("sigtimedwait: {}", std::strerror(errno));
      break;
    }
    std::string message = watchdog ? "WATCHDOG=1" : "";
    if (std::string now = StatusLine(status_api, manager.synced()); now != status_line) {
      status_line = std::move(now);
      message += (message.empty() ? "" : "\n") + ("STATUS=" + status_line);
    }
    if (!message.empty()) Notify(message);
  }
  return signal > 0 ? signal : 0;
}

// Serves the metrics and the read API at the addresses asked for (none when
// empty). False, said why, when either cannot be served.
bool StartEndpoints(const controller::RunOptions& options,
                    metrics::MetricsEndpoint& metrics_endpoint, controller::StatusApi& status_api) {
  if (!options.metrics_addr.empty()) {
    if (api::Status s = metrics_endpoint.Start(); !s.ok()) {
      spdlog::critical("--metrics-addr: {}", s.ToString());
      return false;
    }
    spdlog::info("event=MetricsServing addr={} port={} path=/metrics", options.metrics_addr,
                 metrics_endpoint.port());
  }
  if (!options.api_addr.empty()) {
    // A read API needs a few threads, not cpprestsdk's default 40.
    controller::SizeHttpThreadPool(4);
    if (api::Status s = status_api.Start(); !s.ok()) {
      spdlog::critical("--api-addr: {}", s.ToString());
      return false;
    }
    spdlog::info("event=ApiServing addr={}", options.api_addr);
  }
  return true;
}

// Logs to stderr (journald adds its own time stamps; ours are UTC) at --log-level.
void SetUpLogging(const controller::RunOptions& options) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt("vmlet"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(options.log_level));
}

// SIGTERM and SIGINT, blocked in the calling thread so that every thread
// started after it inherits the mask and only WaitForStopSignal takes them.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

// The drivers this vmlet carries, each with the identity checker for its VMMs
// and the decorator through which the controller sees it (counting and timing
// its calls).
struct HostDrivers {
  drivers::PosixProcessLauncher launcher;
  std::unique_ptr<drivers::FakeVmDriver> fake;
  std::unique_ptr<drivers::QemuDriver> qemu;
  std::unique_ptr<drivers::CloudHypervisorDriver> cloud_hypervisor;
  std::unique_ptr<drivers::VmmIdentity> fake_identity;
  std::unique_ptr<drivers::VmmIdentity> qemu_identity;
  std::unique_ptr<drivers::VmmIdentity> cloud_hypervisor_identity;
  std::vector<std::unique_ptr<metrics::MeteredDriver>> metered;

  // Ends the drivers' own threads (the ready-marker watchers). Idempotent.
  void Stop() {
    if (qemu) qemu->Stop();
    if (cloud_hypervisor) cloud_hypervisor->Stop();
  }

  std::vector<std::string> Names() const {
    return {std::string(fake->name()), std::string(qemu->name()),
            std::string(cloud_hypervisor->name())};
  }

  // The slots the controller reconciles with, by driver name.
  std::map<std::string, controller::DriverSlot> Slots(metrics::VmletMetrics& vmlet_metrics,
                                                      api::Clock& clock) {
    auto slot = [&](drivers::VmDriver& driver, drivers::VmmIdentity& identity) {
      metered.push_back(std::make_unique<metrics::MeteredDriver>(driver, vmlet_metrics, clock));
      return controller::DriverSlot{metered.back().get(), &identity};
    };
    return {{"fake", slot(*fake, *fake_identity)},
            {"qemu", slot(*qemu, *qemu_identity)},
            {"cloud-hypervisor", slot(*cloud_hypervisor, *cloud_hypervisor_identity)}};
  }
};

// Builds and starts every driver. OK, or why vmlet cannot run.
api::Status StartDrivers(const controller::RunOptions& options, api::Clock& clock,
                         const drivers::LinuxProcFs& proc_fs, const std::string& boot_id,
                         const std::optional<drivers::VmmCredentials>& vmm_user, HostDrivers& out) {
  out.fake = std::make_unique<drivers::FakeVmDriver>(
      clock, drivers::FakeVmDriver::Options{options.state_dir + "/fake-driver.jsonl", boot_id,
                                            options.fake_boot_delay, options.fake_shutdown_delay});
  if (api::Status s = out.fake->Load(); !s.ok()) {
    return api::Status::Internal("fake driver: " + s.ToString());
  }
  out.fake_identity = std::make_unique<drivers::VmmIdentity>(out.fake->proc_fs());

  drivers::QemuOptions qemu_options;
  qemu_options.qemu_binary = options.qemu_binary;
  if (options.qemu_accel != "auto") qemu_options.accel = options.qemu_accel;
  qemu_options.probe_dir = options.state_dir;
  qemu_options.vmm_user = vmm_user;
  out.qemu = std::make_unique<drivers::QemuDriver>(clock, proc_fs, out.launcher, qemu_options);
  if (api::Status s = out.qemu->Start(); !s.ok()) {
    return api::Status::Internal("qemu driver: " + s.ToString());
  }
  spdlog::info("event=DriverReady driver=qemu binary={} accel={} why=\"{}\" vmm_user={}",
               options.qemu_binary, out.qemu->accel(), out.qemu->accel_reason(),
               vmm_user ? vmm_user->user : "(vmlet's own)");
  out.qemu_identity = std::make_unique<drivers::VmmIdentity>(proc_fs);

  drivers::CloudHypervisorOptions ch_options;
  ch_options.cloud_hypervisor_binary = options.cloud_hypervisor_binary;
  ch_options.vmm_user = vmm_user;
  out.cloud_hypervisor =
      std::make_unique<drivers::CloudHypervisorDriver>(clock, proc_fs, out.launcher, ch_options);
  if (api::Status s = out.cloud_hypervisor->Start(); !s.ok()) {
    return api::Status::Internal("cloud-hypervisor driver: " + s.ToString());
  }
  out.cloud_hypervisor_identity = std::make_unique<drivers::VmmIdentity>(proc_fs);
  return api::Status::Ok();
}

// --vmm-user: who the VMMs run as (nothing: vmlet's own user). With one, every
// file vmlet makes is its own (umask 077) unless it gives it to that user on
// purpose.
api::StatusOr<std::optional<drivers::VmmCredentials>> VmmUser(
    const controller::RunOptions& options) {
  if (options.vmm_user.empty()) return std::optional<drivers::VmmCredentials>();
  api::StatusOr<drivers::VmmCredentials> creds = drivers::LookupVmmCredentials(options.vmm_user);
  if (!creds.ok()) return creds.status();
  ::umask(077);
  return std::optional<drivers::VmmCredentials>(*creds);
}

// --driver names a driver this vmlet carries.
bool DefaultDriverKnown(const controller::RunOptions& options,
                        const std::map<std::string, controller::DriverSlot>& slots) {
  if (slots.contains(options.default_driver)) return true;
  std::string available;
  for (const auto& [name, slot] : slots) available += (available.empty() ? "" : ", ") + name;
  spdlog::critical("--driver {}: that driver is not available in this vmlet (available: {})",
                   options.default_driver, available);
  return false;
}

// Runs the controller until SIGTERM or SIGINT: the read API's objects are
// refreshed after every reconcile pass, so a watch sees each status write
// (docs/api.md); before the first pass they come from the status files.
int Serve(const controller::RunOptions& options, const std::string& node_name, api::Clock& clock,
          sigset_t signals, controller::StateStore& store, controller::Manager& manager,
          metrics::VmletMetrics& vmlet_metrics) {
  controller::ManagerVmSource vm_source(manager, store);
  controller::StatusApi::Options api_options;
  api_options.address = options.api_addr;
  api_options.node_name = node_name;
  api_options.version = VMLET_VERSION;
  controller::StatusApi status_api(api_options, clock, vm_source);
  manager.SetPassObserver(
      [&status_api](const api::VmKey& key, const api::Status&) { status_api.Refresh(key); });
  if (api::Status s = status_api.RefreshAll(); !s.ok()) {
    spdlog::warn("event=ApiRefreshError {}", s.ToString());
  }

  metrics::MetricsEndpoint metrics_endpoint(options.metrics_addr, vmlet_metrics.registry());
  if (!StartEndpoints(options, metrics_endpoint, status_api)) return 1;
  Notify("STATUS=Re-adopting VMs and reading the manifest directory");
  if (api::Status s = manager.Start(); !s.ok()) {
    spdlog::critical("cannot start: {}", s.ToString());
    return 1;
  }
  spdlog::info("event=Running node={} version={}", node_name, VMLET_VERSION);
  std::string status_line = StatusLine(status_api, manager.synced());
  Notify("READY=1\nSTATUS=" + status_line);

  const int signal = WaitForStopSignal(signals, status_api, manager, status_line);
  spdlog::info("event=Stopping signal={}", signal == SIGTERM  ? "SIGTERM"
                                           : signal == SIGINT ? "SIGINT"
                                                              : "none");
  Notify("STOPPING=1\nSTATUS=Stopping; the VMs keep running");
  manager.Stop();
  status_api.Stop();
  metrics_endpoint.Stop();
  return 0;
}

int RunDaemon(const controller::RunOptions& options) {
  SetUpLogging(options);
  RaiseFileLimit();
  const sigset_t signals = BlockStopSignals();

  drivers::RealClock clock;
  drivers::LinuxProcFs proc_fs;
  api::StatusOr<std::string> boot_id = proc_fs.BootId();
  if (!boot_id.ok()) {
    spdlog::critical("cannot read the host boot id: {}", boot_id.status().ToString());
    return 1;
  }
  api::StatusOr<std::optional<drivers::VmmCredentials>> vmm_user = VmmUser(options);
  if (!vmm_user.ok()) {
    spdlog::critical("--vmm-user {}: {}", options.vmm_user, vmm_user.status().ToString());
    return 2;
  }
  controller::StateStore::Options store_options;
  if (*vmm_user) store_options.vmm_group = (*vmm_user)->gid;
  controller::StateStore store(options.state_dir, clock, store_options);
  if (api::Status s = store.Init(); !s.ok()) {
    spdlog::critical("state directory {}: {}", options.state_dir, s.ToString());
    return 1;
  }

  HostDrivers host_drivers;
  if (api::Status s = StartDrivers(options, clock, proc_fs, *boot_id, *vmm_user, host_drivers);
      !s.ok()) {
    spdlog::critical("{}", s.message());
    return 1;
  }
  const std::string node_name = options.node_name.empty() ? HostName() : options.node_name;
  metrics::VmletMetrics vmlet_metrics(
      clock, {VMLET_VERSION, host_drivers.Names(), ManifestErrorReasons(), node_name});
  std::map<std::string, controller::DriverSlot> slots = host_drivers.Slots(vmlet_metrics, clock);
  if (!DefaultDriverKnown(options, slots)) return 2;

  controller::Manager::Options manager_options;
  manager_options.manifests_dir = options.manifests_dir;
  manager_options.node_name = node_name;
  manager_options.workers = options.workers;
  manager_options.resync = options.resync;
  controller::Manager manager(manager_options, clock, store, slots, ManagerCollaborators(options),
                              ReconcilerMetrics(vmlet_metrics), QueueMetrics(vmlet_metrics),
                              ManagerMetrics(vmlet_metrics));
  const int code = Serve(options, node_name, clock, signals, store, manager, vmlet_metrics);
  // Before the manager goes: the drivers' threads report changes to it.
  host_drivers.Stop();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const vmlet::drivers::RealClock clock;
    return vmlet::controller::RunCli(argc, argv, std::cout, std::cerr, clock, RunDaemon);
  } catch (const std::exception& e) {
    std::cerr << "vmlet: fatal: " << e.what() << "\n";
    return 70;  // EX_SOFTWARE
  }
}
