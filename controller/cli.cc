#include "controller/cli.h"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/validation.h"
#include "controller/api_client.h"
#include "controller/api_query.h"
#include "controller/cli_render.h"
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

// `vmlet get` and `vmlet describe`: the API's address and what to show.
struct ClientOptions {
  std::string api_addr = "127.0.0.1:9471";
  std::string output;  // "", wide, json, yaml
  std::string ns = "default";
  bool all_namespaces = false;
  std::string name;
};

constexpr std::chrono::seconds kClientTimeout{10};
constexpr const char* kTableAccept =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

// Why nothing answered, and what to check.
void PrintUnreachable(const ClientOptions& options, const api::Status& why, std::ostream& err) {
  err << "vmlet: cannot reach the vmlet API at " << options.api_addr << " (" << why.message()
      << "): is `vmlet run` running here, serving its API there (--api-addr)?\n";
}

// kubectl's wording for an error reply: "Error from server (REASON): MESSAGE".
void PrintServerError(const ApiResponse& response, std::ostream& err) {
  nlohmann::json status = nlohmann::json::parse(response.body, nullptr, false);
  if (status.is_object() && status.value("kind", "") == "Status") {
    err << "Error from server (" << status.value("reason", "Unknown")
        << "): " << status.value("message", "") << "\n";
  } else {
    err << "Error from server: HTTP " << response.code << ": " << response.body << "\n";
  }
}

// GETs `path` and parses the JSON reply; prints why on `err` and returns
// nothing when there is no JSON 200 reply.
std::optional<nlohmann::json> Fetch(const ClientOptions& options, const std::string& path,
                                    const std::string& accept, std::ostream& err) {
  api::StatusOr<ApiResponse> response = ApiGet(options.api_addr, path, accept, kClientTimeout);
  if (!response.ok()) {
    PrintUnreachable(options, response.status(), err);
    return std::nullopt;
  }
  if (response->code != 200) {
    PrintServerError(*response, err);
    return std::nullopt;
  }
  nlohmann::json body = nlohmann::json::parse(response->body, nullptr, false);
  if (body.is_discarded()) {
    err << "vmlet: the API at " << options.api_addr << " answered " << path
        << " with something that is not JSON\n";
    return std::nullopt;
  }
  return body;
}

// Strings a YAML reader would take for another type are quoted.
bool LooksTyped(const std::string& s) {
  if (s.empty()) return true;
  std::string lower;
  for (char c : s) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char* word : {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}) {
    if (lower == word) return true;
  }
  const char first = s.front();
  return std::isdigit(static_cast<unsigned char>(first)) || first == '-' || first == '+' ||
         first == '.';
}

void EmitYaml(YAML::Emitter& out, const nlohmann::json& j) {
  // Empty maps and lists as {} and [], as kubectl prints them.
  if ((j.is_object() || j.is_array()) && j.empty()) out << YAML::Flow;
  if (j.is_object()) {
    out << YAML::BeginMap;
    for (const auto& [key, value] : j.items()) {
      out << YAML::Key << key << YAML::Value;
      EmitYaml(out, value);
    }
    out << YAML::EndMap;
  } else if (j.is_array()) {
    out << YAML::BeginSeq;
    for (const nlohmann::json& value : j) EmitYaml(out, value);
    out << YAML::EndSeq;
  } else if (j.is_string()) {
    const std::string& text = j.get_ref<const std::string&>();
    if (LooksTyped(text)) out << YAML::DoubleQuoted;
    out << text;
  } else if (j.is_boolean()) {
    out << j.get<bool>();
  } else if (j.is_number_unsigned()) {
    out << j.get<uint64_t>();
  } else if (j.is_number_integer()) {
    out << j.get<int64_t>();
  } else if (j.is_number_float()) {
    out << j.get<double>();
  } else {
    out << YAML::Null;
  }
}

int Get(const ClientOptions& options, std::ostream& out, std::ostream& err) {
  if (options.all_namespaces && !options.name.empty()) {
    err << "vmlet get: a VM cannot be got by name across all namespaces (-A): name a "
           "namespace with -n\n";
    return 2;
  }
  std::string path = "/apis/vmlet.dev/v1alpha1/";
  if (options.all_namespaces) {
    path += "virtualmachines";
  } else {
    path += "namespaces/" + options.ns + "/virtualmachines";
    if (!options.name.empty()) path += "/" + options.name;
  }
  const bool table = options.output.empty() || options.output == "wide";
  std::optional<nlohmann::json> body =
      Fetch(options, path, table ? kTableAccept : "application/json", err);
  if (!body) return 1;
  if (table) {
    if (body->value("rows", nlohmann::json::array()).empty()) {
      if (options.all_namespaces) {
        err << "No resources found\n";
      } else {
        err << "No resources found in " << options.ns << " namespace.\n";
      }
      return 0;
    }
    out << RenderTable(*body, options.output == "wide", options.all_namespaces);
    return 0;
  }
  if (options.name.empty()) {
    // kubectl prints a list as a v1 List.
    body = nlohmann::json{{"apiVersion", "v1"},
                          {"kind", "List"},
                          {"metadata", {{"resourceVersion", ""}}},
                          {"items", body->value("items", nlohmann::json::array())}};
  }
  if (options.output == "json") {
    out << body->dump(4) << "\n";
  } else {
    YAML::Emitter yaml;
    EmitYaml(yaml, *body);
    out << yaml.c_str() << "\n";
  }
  return 0;
}

int Describe(ClientOptions options, const std::string& target, const api::Clock& clock,
             std::ostream& out, std::ostream& err) {
  const size_t slash = target.find('/');
  if (slash != std::string::npos) {
    options.ns = target.substr(0, slash);
    options.name = target.substr(slash + 1);
  } else {
    options.name = target;
  }
  if (!api::ValidateName(options.ns).ok() || !api::ValidateName(options.name).ok()) {
    err << "vmlet describe: \"" << target << "\" is not NAMESPACE/NAME (or NAME)\n";
    return 2;
  }
  std::optional<nlohmann::json> vm = Fetch(
      options,
      "/apis/vmlet.dev/v1alpha1/namespaces/" + options.ns + "/virtualmachines/" + options.name,
      "application/json", err);
  if (!vm) return 1;
  // The query kubectl describe sends for an object's events.
  const std::string selector = "involvedObject.name=" + options.name +
                               ",involvedObject.namespace=" + options.ns +
                               ",involvedObject.kind=VirtualMachine,involvedObject.uid=" +
                               (*vm)["metadata"].value("uid", "");
  std::optional<nlohmann::json> events = Fetch(
      options,
      "/api/v1/namespaces/" + options.ns + "/events?fieldSelector=" + EncodeQueryValue(selector),
      "application/json", err);
  if (!events) return 1;
  out << RenderDescribe(*vm, *events, clock.WallNow());
  return 0;
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
  return std::chrono::milliseconds(std::llround(value * scale));
}

namespace {

std::string CheckDriver(const std::string& driver) {
  return api::IsKnownDriver(driver) ? std::string()
                                    : "unknown driver (known: qemu, cloud-hypervisor, fake)";
}

std::string CheckDuration(const std::string& text) {
  return ParseDuration(text) ? std::string() : "not a duration (e.g. 60s, 500ms, 2m)";
}

// `vmlet validate`: its arguments into `paths` and `options`.
CLI::App* AddValidateCommand(CLI::App& app, std::vector<std::string>& paths,
                             manifests::ParseOptions& options) {
  CLI::App* validate = app.add_subcommand(
      "validate", "Check manifests offline, exactly as `vmlet run` would read them");
  validate->add_option("paths", paths, "Manifest files or directories (searched recursively)")
      ->required();
  // One directory per flag (repeat the flag for more), so that a root is
  // never mistaken for a manifest path that follows it, nor the reverse.
  validate
      ->add_option("--image-root", options.image_roots,
                   "Every path field must resolve inside one of these directories (repeatable)")
      ->allow_extra_args(false);
  validate
      ->add_option("--share-root", options.share_roots,
                   "Every sharedDirs[].hostPath must resolve inside one of these directories "
                   "(repeatable)")
      ->allow_extra_args(false);
  validate->add_flag("--require-node-name", options.require_node_name,
                     "Every manifest must name its host in spec.nodeName");
  validate
      ->add_option("--default-driver", options.default_driver,
                   "The driver of manifests that name none")
      ->capture_default_str()
      ->check(CheckDriver);
  return validate;
}

// `vmlet run`'s durations as written, parsed once the flags are read.
struct RunDurationFlags {
  std::string resync = "60s";
  std::string fake_boot_delay = "500ms";
  std::string fake_shutdown_delay = "100ms";
};

// The flags of `vmlet run`'s drivers.
void AddDriverFlags(CLI::App* run, RunOptions& options, RunDurationFlags& durations) {
  run->add_option("--qemu-binary", options.qemu_binary,
                  "qemu driver: the QEMU program (a path, or a name found on PATH)")
      ->capture_default_str()
      ->group("QEMU driver");
  run->add_option("--qemu-accel", options.qemu_accel,
                  "qemu driver: kvm, tcg, or auto (kvm when /dev/kvm is usable)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "kvm", "tcg"}))
      ->group("QEMU driver");
  run->add_option("--cloud-hypervisor-bin", options.cloud_hypervisor_binary,
                  "cloud-hypervisor driver: the Cloud Hypervisor program (a path, or a name "
                  "found on PATH)")
      ->capture_default_str()
      ->group("Cloud Hypervisor driver");
  run->add_option("--fake-boot-delay", durations.fake_boot_delay,
                  "fake driver: how long its guests take to become Ready")
      ->capture_default_str()
      ->check(CheckDuration)
      ->group("Fake driver");
  run->add_option("--fake-shutdown-delay", durations.fake_shutdown_delay,
                  "fake driver: how long its guests take to power off")
      ->capture_default_str()
      ->check(CheckDuration)
      ->group("Fake driver");
}

// `vmlet run`: its flags into `options` and `durations`.
CLI::App* AddRunCommand(CLI::App& app, RunOptions& options, RunDurationFlags& durations) {
  CLI::App* run =
      app.add_subcommand("run", "Watch a manifest directory and keep this host's VMs equal to it");
  run->add_option("--manifests", options.manifests_dir, "The manifest directory to watch")
      ->required();
  run->add_option("--state-dir", options.state_dir,
                  "Where vmlet keeps its records, status and the VMs' files")
      ->capture_default_str();
  run->add_option("--driver", options.default_driver,
                  "The driver of manifests that name none (spec.driver overrides)")
      ->capture_default_str()
      ->check(CheckDriver);
  run->add_option("--image-root", options.image_roots,
                  "Every path field must resolve inside one of these directories (repeatable)")
      ->allow_extra_args(false);
  run->add_option("--vmm-user", options.vmm_user,
                  "Run every VMM as this user, never as root (default: as vmlet)");
  run->add_option("--share-root", options.share_roots,
                  "Every sharedDirs[].hostPath must resolve inside one of these directories "
                  "(repeatable)")
      ->allow_extra_args(false);
  run->add_option("--node-name", options.node_name,
                  "This node's name; manifests with another spec.nodeName are not run here "
                  "(default: the host name)");
  run->add_flag("--require-node-name", options.require_node_name,
                "Every manifest must name its host in spec.nodeName (for a fleet repository: a "
                "manifest without one is an error, never run on every host)");
  run->add_option("--workers", options.workers, "Reconcile workers")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  run->add_option("--resync", durations.resync, "How often every VM is looked at, whatever happens")
      ->capture_default_str()
      ->check(CheckDuration);
  run->add_option("--metrics-addr", options.metrics_addr,
                  "Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: any free "
                  "port); \"off\" or \"\" to serve none")
      ->capture_default_str()
      ->check([](const std::string& addr) {
        return addr.empty() || addr == "off" || IsHostPort(addr)
                   ? std::string()
                   : "not HOST:PORT (e.g. 127.0.0.1:9470, [::1]:9470) or off";
      });
  run->add_option("--api-addr", options.api_addr,
                  "Serve the read API (Kubernetes-shaped, for kubectl and `vmlet get`) at "
                  "http://HOST:PORT/; \"off\" or \"\" to serve none")
      ->capture_default_str()
      ->check([](const std::string& addr) {
        return addr.empty() || addr == "off" || IsHostPort(addr)
                   ? std::string()
                   : "not HOST:PORT (e.g. 127.0.0.1:9471, [::1]:9471) or off";
      });
  run->add_option("--log-level", options.log_level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  AddDriverFlags(run, options, durations);
  return run;
}

}  // namespace

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
           const api::Clock& clock, const RunDaemon& run_daemon) {
  CLI::App app{"vmlet: keeps the VMs on this host equal to the manifests in a directory"};
  app.require_subcommand(1);
  bool show_version = false;
  app.add_flag("--version", show_version, "Print the version and exit");

  CLI::App* version = app.add_subcommand("version", "Print the version");

  std::vector<std::string> paths;
  manifests::ParseOptions options;
  CLI::App* validate = AddValidateCommand(app, paths, options);

  RunOptions run_options;
  RunDurationFlags durations;
  CLI::App* run = AddRunCommand(app, run_options, durations);

  ClientOptions client;
  auto api_addr_option = [](CLI::App* command, ClientOptions& options) {
    command->add_option("--api-addr", options.api_addr, "Where `vmlet run` serves its API")
        ->capture_default_str()
        ->check([](const std::string& addr) {
          return IsHostPort(addr) ? std::string() : "not HOST:PORT (e.g. 127.0.0.1:9471)";
        });
  };
  CLI::App* get = app.add_subcommand(
      "get", "List the VMs of a running vmlet (or show one), as kubectl get does");
  get->add_option("name", client.name, "A VM's name (default: every VM in the namespace)");
  get->add_option("-o,--output", client.output, "wide, json or yaml")
      ->check(CLI::IsMember({"wide", "json", "yaml"}));
  get->add_option("-n,--namespace", client.ns, "The VMs' namespace")->capture_default_str();
  get->add_flag("-A,--all-namespaces", client.all_namespaces, "VMs of every namespace");
  api_addr_option(get, client);

  CLI::App* describe =
      app.add_subcommand("describe", "Show one VM in detail, with its conditions and events");
  std::string describe_target;
  describe->add_option("vm", describe_target, "NAMESPACE/NAME (or NAME in namespace default)")
      ->required();
  api_addr_option(describe, client);

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
  if (get->parsed()) return Get(client, out, err);
  if (describe->parsed()) return Describe(client, describe_target, clock, out, err);
  if (run->parsed()) {
    if (!run_daemon) {
      err << "vmlet run: this binary cannot run the daemon\n";
      return 2;
    }
    if (run_options.metrics_addr == "off") run_options.metrics_addr.clear();
    if (run_options.api_addr == "off") run_options.api_addr.clear();
    run_options.resync = *ParseDuration(durations.resync);
    run_options.fake_boot_delay = *ParseDuration(durations.fake_boot_delay);
    run_options.fake_shutdown_delay = *ParseDuration(durations.fake_shutdown_delay);
    return run_daemon(run_options);
  }
  return 2;
}

}  // namespace vmlet::controller
