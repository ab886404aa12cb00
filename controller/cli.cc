#include "controller/cli.h"

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "api/validation.h"
#include "manifests/manifest_files.h"

namespace vmlet::controller {
namespace {

constexpr const char* kVersion = VMLET_VERSION;

int Validate(const std::vector<std::string>& paths, const manifests::ParseOptions& options,
             std::ostream& out, std::ostream& err) {
  manifests::LoadResult result = manifests::LoadManifests(paths, options);
  for (const manifests::ManifestVm& vm : result.vms) {
    out << "ok " << vm.spec.key() << " " << vm.location.ToString() << "\n";
  }
  for (const manifests::ManifestError& e : result.errors) err << e.ToString() << "\n";
  out << result.vms.size() << " valid VirtualMachine" << (result.vms.size() == 1 ? "" : "s") << ", "
      << result.errors.size() << " error" << (result.errors.size() == 1 ? "" : "s") << "\n";
  return result.errors.empty() ? 0 : 1;
}

// "HOST:PORT" with a non-empty host and a port in 0..65535; the host is
// checked by whoever binds it.
bool IsHostPort(std::string_view addr) {
  const size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view port = addr.substr(colon + 1);
  if (port.empty() || port.size() > 5) return false;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
  }
  return std::stoi(std::string(port)) <= 65535;
}

}  // namespace

std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    double ms;
  };
  static constexpr Unit kUnits[] = {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  double scale = 1000;
  for (const Unit& unit : kUnits) {
    if (text.size() > unit.suffix.size() && text.ends_with(unit.suffix)) {
      // "ms" before "s" and "m": the longest suffix that fits wins.
      scale = unit.ms;
      text.remove_suffix(unit.suffix.size());
      break;
    }
  }
  if (text.empty()) return std::nullopt;
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(std::string(text), &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size() || !(value >= 0) || value * scale > 1e15) return std::nullopt;
  return std::chrono::milliseconds(static_cast<int64_t>(value * scale + 0.5));
}

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
           const RunDaemon& run_daemon) {
  CLI::App app{"vmlet: keeps the VMs on this host equal to the manifests in a directory"};
  app.require_subcommand(1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and exit");

  CLI::App* version = app.add_subcommand("version", "Print the version");

  CLI::App* validate = app.add_subcommand(
      "validate", "Check manifests offline, exactly as `vmlet run` would read them");
  std::vector<std::string> paths;
  manifests::ParseOptions options;
  validate->add_option("paths", paths, "Manifest files or directories (searched recursively)")
      ->required();
  validate->add_option("--image-root", options.image_roots,
                       "Every path field must resolve inside one of these directories "
                       "(repeatable)");
  validate
      ->add_option("--default-driver", options.default_driver,
                   "The driver of manifests that name none")
      ->capture_default_str()
      ->check([](const std::string& driver) {
        return api::IsKnownDriver(driver) ? std::string()
                                          : "unknown driver (known: qemu, cloud-hypervisor, fake)";
      });

  CLI::App* run =
      app.add_subcommand("run", "Watch a manifest directory and keep this host's VMs equal to it");
  RunOptions run_options;
  std::string resync = "60s", fake_boot_delay = "500ms", fake_shutdown_delay = "100ms";
  run->add_option("--manifests", run_options.manifests_dir, "The manifest directory to watch")
      ->required();
  run->add_option("--state-dir", run_options.state_dir,
                  "Where vmlet keeps its records, status and the VMs' files")
      ->capture_default_str();
  run->add_option("--driver", run_options.default_driver,
                  "The driver of manifests that name none (spec.driver overrides)")
      ->capture_default_str()
      ->check([](const std::string& driver) {
        return api::IsKnownDriver(driver) ? std::string()
                                          : "unknown driver (known: qemu, cloud-hypervisor, fake)";
      });
  run->add_option("--image-root", run_options.image_roots,
                  "Every path field must resolve inside one of these directories (repeatable)");
  run->add_option("--node-name", run_options.node_name,
                  "This node's name; manifests with another spec.nodeName are not run here "
                  "(default: the host name)");
  run->add_option("--workers", run_options.workers, "Reconcile workers")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  auto duration = [](const std::string& text) {
    return ParseDuration(text) ? std::string() : "not a duration (e.g. 60s, 500ms, 2m)";
  };
  run->add_option("--resync", resync, "How often every VM is looked at, whatever happens")
      ->capture_default_str()
      ->check(duration);
  run->add_option("--metrics-addr", run_options.metrics_addr,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free "
                  "port); \"off\" or \"\" to serve none")
      ->capture_default_str()
      ->check([](const std::string& addr) {
        return addr.empty() || addr == "off" || IsHostPort(addr)
                   ? std::string()
                   : "not HOST:PORT (e.g. 127.0.0.1:9470, [::1]:9470) or off";
      });
  run->add_option("--log-level", run_options.log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  run->add_option("--qemu-binary", run_options.qemu_binary,
                  "qemu driver: the QEMU program (a path, or a name found on PATH)")
      ->capture_default_str()
      ->group("QEMU driver");
  run->add_option("--qemu-accel", run_options.qemu_accel,
                  "qemu driver: kvm, tcg, or auto (kvm when /dev/kvm is usable)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->group("QEMU driver");
  run->add_option("--cloud-hypervisor-bin", run_options.cloud_hypervisor_binary,
                  "cloud-hypervisor driver: the Cloud Hypervisor program (a path, or a name "
                  "found on PATH)")
      ->capture_default_str()
      ->group("Cloud Hypervisor driver");
  run->add_option("--fake-boot-delay", fake_boot_delay,
                  "fake driver: how long its guests take to become Ready")
      ->capture_default_str()
      ->check(duration)
      ->group("Fake driver");
  run->add_option("--fake-shutdown-delay", fake_shutdown_delay,
                  "fake driver: how long its guests take to power off")
      ->capture_default_str()
      ->check(duration)
      ->group("Fake driver");

  // "--version" alone satisfies the parser without a subcommand.
  app.preparse_callback([&](size_t) {
    for (int i = 1; i < argc; ++i) {
      if (std::string_view(argv[i]) == "--version") app.require_subcommand(0);
    }
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e, out, err) == 0 ? 0 : 2;
  }
  if (show_version || version->parsed()) {
    out << "vmlet " << kVersion << "\n";
    return 0;
  }
  if (validate->parsed()) return Validate(paths, options, out, err);
  if (run->parsed()) {
    if (!run_daemon) {
      err << "vmlet run: this binary cannot run the daemon\n";
      return 2;
    }
    if (run_options.metrics_addr == "off") run_options.metrics_addr.clear();
    run_options.resync = *ParseDuration(resync);
    run_options.fake_boot_delay = *ParseDuration(fake_boot_delay);
    run_options.fake_shutdown_delay = *ParseDuration(fake_shutdown_delay);
    return run_daemon(run_options);
  }
  return 2;
}

}  // namespace vmlet::controller
