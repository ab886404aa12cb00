// vmlet's entry point: the one place that names real implementations and
// wires them together.
#include <csignal>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
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
#include "drivers/vmm_identity.h"
#include "drivers/host/vmm_user.h"
#include "drivers/qemu/qemu_driver.h"
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

int RunDaemon(const controller::RunOptions& options) {
  spdlog::set_default_logger(spdlog::stderr_logger_mt("vmlet"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  spdlog::set_level(spdlog::level::from_str(options.log_level));
  RaiseFileLimit();

  // SIGTERM and SIGINT are taken by this thread alone (sigwait below); every
  // thread started after this inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  drivers::RealClock clock;
  drivers::LinuxProcFs proc_fs;
  api::StatusOr<std::string> boot_id = proc_fs.BootId();
  if (!boot_id.ok()) {
    spdlog::critical("cannot read the host boot id: {}", boot_id.status().ToString());
    return 1;
  }
  // --vmm-user: who the VMMs run as. Every file vmlet makes is its own
  // (umask 077) unless it gives it to that user on purpose.
  std::optional<drivers::VmmCredentials> vmm_user;
  if (!options.vmm_user.empty()) {
    api::StatusOr<drivers::VmmCredentials> creds = drivers::LookupVmmCredentials(options.vmm_user);
    if (!creds.ok()) {
      spdlog::critical("--vmm-user {}: {}", options.vmm_user, creds.status().ToString());
      return 2;
    }
    vmm_user = *creds;
    ::umask(077);
  }
  controller::StateStore::Options store_options;
  if (vmm_user) store_options.vmm_group = vmm_user->gid;
  controller::StateStore store(options.state_dir, clock, store_options);
  if (api::Status s = store.Init(); !s.ok()) {
    spdlog::critical("state directory {}: {}", options.state_dir, s.ToString());
    return 1;
  }

  // The drivers this vmlet carries, each with the identity checker for its VMMs.
  drivers::FakeVmDriver fake(clock, {options.state_dir + "/fake-driver.jsonl", *boot_id,
                                     options.fake_boot_delay, options.fake_shutdown_delay});
  if (api::Status s = fake.Load(); !s.ok()) {
    spdlog::critical("fake driver: {}", s.ToString());
    return 1;
  }
  drivers::VmmIdentity fake_identity(fake.proc_fs());

  drivers::PosixProcessLauncher launcher;
  drivers::QemuOptions qemu_options;
  qemu_options.qemu_binary = options.qemu_binary;
  if (options.qemu_accel != "auto") qemu_options.accel = options.qemu_accel;
  qemu_options.probe_dir = options.state_dir;
  qemu_options.vmm_user = vmm_user;
  drivers::QemuDriver qemu(clock, proc_fs, launcher, qemu_options);
  if (api::Status s = qemu.Start(); !s.ok()) {
    spdlog::critical("qemu driver: {}", s.ToString());
    return 1;
  }
  spdlog::info("event=DriverReady driver=qemu binary={} accel={} why=\"{}\" vmm_user={}",
               options.qemu_binary, qemu.accel(), qemu.accel_reason(),
               vmm_user ? vmm_user->user : "(vmlet's own)");
  drivers::VmmIdentity qemu_identity(proc_fs);

  drivers::CloudHypervisorOptions ch_options;
  ch_options.cloud_hypervisor_binary = options.cloud_hypervisor_binary;
  ch_options.vmm_user = vmm_user;
  drivers::CloudHypervisorDriver cloud_hypervisor(clock, proc_fs, launcher, ch_options);
  if (api::Status s = cloud_hypervisor.Start(); !s.ok()) {
    spdlog::critical("cloud-hypervisor driver: {}", s.ToString());
    return 1;
  }
  drivers::VmmIdentity cloud_hypervisor_identity(proc_fs);

  const std::string node_name = options.node_name.empty() ? HostName() : options.node_name;
  metrics::VmletMetrics vmlet_metrics(clock, {VMLET_VERSION,
                                              {std::string(fake.name()), std::string(qemu.name()),
                                               std::string(cloud_hypervisor.name())},
                                              ManifestErrorReasons(),
                                              node_name});
  // The controller sees each driver through a decorator that counts and times
  // its calls; the identity checkers are the drivers' own.
  metrics::MeteredDriver metered_fake(fake, vmlet_metrics, clock);
  metrics::MeteredDriver metered_qemu(qemu, vmlet_metrics, clock);
  metrics::MeteredDriver metered_cloud_hypervisor(cloud_hypervisor, vmlet_metrics, clock);
  std::map<std::string, controller::DriverSlot> drivers = {
      {"fake", {&metered_fake, &fake_identity}},
      {"qemu", {&metered_qemu, &qemu_identity}},
      {"cloud-hypervisor", {&metered_cloud_hypervisor, &cloud_hypervisor_identity}},
  };
  if (!drivers.contains(options.default_driver)) {
    std::string available;
    for (const auto& [name, slot] : drivers) available += (available.empty() ? "" : ", ") + name;
    spdlog::critical("--driver {}: that driver is not available in this vmlet (available: {})",
                     options.default_driver, available);
    return 2;
  }

  controller::Manager::Options manager_options;
  manager_options.manifests_dir = options.manifests_dir;
  manager_options.node_name = node_name;
  manager_options.workers = options.workers;
  manager_options.resync = options.resync;
  controller::Manager manager(manager_options, clock, store, drivers, ManagerCollaborators(options),
                              ReconcilerMetrics(vmlet_metrics), QueueMetrics(vmlet_metrics),
                              ManagerMetrics(vmlet_metrics));

  // The read API's objects are refreshed after every reconcile pass, so a
  // watch sees each status write (docs/api.md); before the first pass they
  // come from the status files on disk.
  controller::ManagerVmSource vm_source(manager, store);
  controller::StatusApi::Options api_options;
  api_options.address = options.api_addr;
  api_options.node_name = manager_options.node_name;
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
  spdlog::info("event=Running node={} version={}", manager_options.node_name, VMLET_VERSION);
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
  qemu.Stop();
  cloud_hypervisor.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return vmlet::controller::RunCli(argc, argv, std::cout, std::cerr, RunDaemon);
  } catch (const std::exception& e) {
    std::cerr << "vmlet: fatal: " << e.what() << "\n";
    return 70;  // EX_SOFTWARE
  }
}
