// vmlet's entry point: the one place that names real implementations and
// wires them together.
#include <signal.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <exception>
#include <iostream>
#include <map>
#include <memory>

#include "controller/cli.h"
#include "controller/manager.h"
#include "controller/state_store.h"
#include "drivers/fake/fake_vm_driver.h"
#include "drivers/host/proc_fs.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/real_clock.h"
#include "drivers/host/vmm_identity.h"
#include "drivers/qemu/qemu_driver.h"

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
  controller::StateStore store(options.state_dir, clock);
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
  drivers::QemuDriver qemu(clock, proc_fs, launcher, qemu_options);
  if (api::Status s = qemu.Start(); !s.ok()) {
    spdlog::critical("qemu driver: {}", s.ToString());
    return 1;
  }
  spdlog::info("event=DriverReady driver=qemu binary={} accel={} why=\"{}\"", options.qemu_binary,
               qemu.accel(), qemu.accel_reason());
  drivers::VmmIdentity qemu_identity(proc_fs);

  std::map<std::string, controller::DriverSlot> drivers = {
      {"fake", {&fake, &fake_identity}},
      {"qemu", {&qemu, &qemu_identity}},
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
  manager_options.parse.default_driver = options.default_driver;
  manager_options.parse.image_roots = options.image_roots;
  manager_options.node_name = options.node_name.empty() ? HostName() : options.node_name;
  manager_options.workers = options.workers;
  manager_options.resync = options.resync;
  controller::Manager manager(manager_options, clock, store, drivers, {});
  if (api::Status s = manager.Start(); !s.ok()) {
    spdlog::critical("cannot start: {}", s.ToString());
    return 1;
  }
  spdlog::info("event=Running node={} version={}", manager_options.node_name, VMLET_VERSION);

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("event=Stopping signal={}", signal == SIGTERM ? "SIGTERM" : "SIGINT");
  manager.Stop();
  qemu.Stop();
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
