#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "api/clock.h"

namespace vmlet::controller {

// `vmlet run`'s settings, as parsed from its flags.
struct RunOptions {
  std::string manifests_dir;
  std::string state_dir = "/var/lib/vmlet";
  std::string default_driver = "qemu";
  std::vector<std::string> image_roots;
  // Every sharedDirs[].hostPath must resolve inside one of these (none: any).
  std::vector<std::string> share_roots;
  // Every VMM runs as this user (not root); empty: as vmlet.
  std::string vmm_user;
  std::string node_name;  // default: the host name
  // Manifests without spec.nodeName are errors (a fleet repository).
  bool require_node_name = false;
  int workers = 4;
  std::chrono::milliseconds resync = std::chrono::seconds(60);
  std::string log_level = "info";
  // Where /metrics is served, "HOST:PORT"; empty: not served ("off" on the
  // command line).
  std::string metrics_addr = "127.0.0.1:9470";
  // Where the read API is served, "HOST:PORT"; empty: not served ("off" on
  // the command line).
  std::string api_addr = "127.0.0.1:9471";
  // The qemu driver: its program, and kvm, tcg or auto.
  std::string qemu_binary = "qemu-system-x86_64";
  std::string qemu_accel = "auto";
  // The cloud-hypervisor driver's program: a path, or a name found on PATH.
  std::string cloud_hypervisor_binary = "cloud-hypervisor";
  // The fake driver's simulated guest (for tests and benchmarks).
  std::chrono::milliseconds fake_boot_delay = std::chrono::milliseconds(500);
  std::chrono::milliseconds fake_shutdown_delay = std::chrono::milliseconds(100);
};

// Runs the daemon until SIGTERM/SIGINT; returns the exit code. main.cc
// provides it (it is the one place that wires real implementations).
using RunDaemon = std::function<int(const RunOptions&)>;

// "90s", "500ms", "2m", "1h", "1.5s" (a bare number is seconds). Nothing
// for anything else, or a negative duration.
std::optional<std::chrono::milliseconds> ParseDuration(std::string_view text);

// vmlet's command line (CLI11):
//   vmlet validate [--image-root DIR]... [--default-driver NAME] [--require-node-name] PATH...
//       Parses and validates every manifest under each PATH (files or
//       directories, recursively) exactly as `vmlet run` would. Prints one
//       line per error, "FILE:LINE:COL: FIELD: REASON", on `err`, and one
//       line per valid VM on `out`. Exit 0 when everything is valid, 1
//       otherwise.
//   vmlet run --manifests DIR [--state-dir DIR] [--driver NAME] [--image-root DIR]...
//             [--node-name NAME] [--require-node-name] [--workers N] [--resync DURATION]
//             [--metrics-addr HOST:PORT|off] [--api-addr HOST:PORT|off]
//             [--qemu-binary PATH] [--qemu-accel kvm|tcg|auto]
//             [--cloud-hypervisor-bin PATH]
//       Parses the flags into RunOptions and calls `run`.
//   vmlet get [NAME] [-o wide|json|yaml] [-n NS | -A] [--api-addr HOST:PORT]
//       Asks a running vmlet's read API (controller/status_api.h) for its VMs
//       and prints them as kubectl get does: a table (NAME DESIRED PHASE IP
//       RESTARTS AGE; NAMESPACE first with -A; NODE DRIVER with -o wide), or
//       the objects as JSON or YAML. No VM in the namespace: "No resources
//       found in NS namespace." on `err`, exit 0.
//   vmlet describe [NS/]NAME [--api-addr HOST:PORT]
//       Prints one VM as kubectl describe does: metadata, spec, status, a
//       conditions table and its recent events.
//   For get and describe: exit 1, with the reason on `err`, when nothing
//   answers at the API address ("is vmlet running?"), when the VM does not
//   exist (kubectl's "Error from server (NotFound): ..."), or on any other
//   error reply.
//   vmlet version (or --version)
//       Prints "vmlet <version>".
// `clock` gives describe its "now" (ages). Returns the process exit code: 0
// success, 1 invalid manifests (or a failed get/describe), 2 usage error, or
// what `run` returns.
int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
           const api::Clock& clock, const RunDaemon& run = nullptr);

}  // namespace vmlet::controller
