#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/vm_key.h"

namespace vmlet::api {

// What the operator wants the VM to be doing.
enum class DesiredState { kRunning, kPaused, kStopped };

// What to do when the guest stops or the VMM dies without being asked to.
enum class RestartPolicy {
  kAlways,     // boot again, whatever the exit (after crash-loop backoff)
  kOnFailure,  // boot again only after a failure, not after a clean guest power-off
  kNever,      // stay Stopped or Failed
};

// The manifest spellings: "Running", "Paused", "Stopped" / "Always",
// "OnFailure", "Never". Parse* return nothing for any other text.
std::string_view ToString(DesiredState state);
std::string_view ToString(RestartPolicy policy);
std::optional<DesiredState> ParseDesiredState(std::string_view text);
std::optional<RestartPolicy> ParseRestartPolicy(std::string_view text);

// A TAP device the VM is attached to (Linux). The seed's
// NetworkAttachment::Tap; its SocketPairFd variant is macOS-only and has no
// manifest form.
struct NetworkAttachment {
  std::string tap;                 // host interface name, 1..15 of [A-Za-z0-9_-]
  std::optional<std::string> mac;  // "52:54:00:12:34:56"; defaulted by the manifest parser

  friend bool operator==(const NetworkAttachment&, const NetworkAttachment&) = default;
};

// A host directory shared with the guest over virtio-fs.
struct SharedDir {
  std::string host_path;   // absolute
  std::string tag;         // mount tag in the guest, unique per VM
  bool read_only = false;  // enforced on the host side, not only in the guest

  friend bool operator==(const SharedDir&, const SharedDir&) = default;
};

// Everything needed to boot and manage one VM: every field of the seed's
// VmConfig, plus the controller's fields. Field comments give the manifest
// name and the default the manifest parser applies (docs/manifests.md).
struct VmSpec {
  // --- identity (manifest metadata) ---
  std::string name;                           // metadata.name (required)
  std::string ns = "default";                 // metadata.namespace
  std::map<std::string, std::string> labels;  // metadata.labels

  // --- controller fields ---
  DesiredState desired_state = DesiredState::kRunning;    // spec.desiredState
  RestartPolicy restart_policy = RestartPolicy::kAlways;  // spec.restartPolicy
  std::string driver;                    // spec.driver; default: vmlet's --default-driver
  std::optional<std::string> node_name;  // spec.nodeName; unset: any node
  // spec.readiness.timeoutSeconds: Starting -> Failed if no ready marker by
  // then; 0 waits forever.
  std::chrono::seconds readiness_timeout{300};
  // spec.stopGracePeriodSeconds: how long a graceful (ACPI) stop may take
  // before the forced stop; 0 forces at once.
  std::chrono::seconds stop_grace_period{30};

  // --- the seed's VmConfig ---
  std::string kernel;                             // spec.kernel (required)
  std::optional<std::string> initramfs;           // spec.initramfs
  std::optional<std::string> root_disk;           // spec.rootDisk
  std::optional<std::string> data_disk;           // spec.dataDisk
  std::optional<std::string> seed_iso;            // spec.seedIso (cloud-init NoCloud)
  uint32_t cpus = 1;                              // spec.cpus
  uint64_t memory_mb = 512;                       // spec.memoryMb
  std::vector<NetworkAttachment> networks;        // spec.networks
  std::vector<SharedDir> shared_dirs;             // spec.sharedDirs
  std::optional<std::string> cmdline;             // spec.cmdline; unset: the driver's default
  std::optional<std::string> netns;               // spec.netns: run the VMM in `ip netns exec NAME`
  bool vsock = false;                             // spec.vsock
  std::optional<std::string> machine_id;          // spec.machineId (opaque, base64)
  std::optional<std::string> efi_variable_store;  // spec.efiVariableStore
  bool rosetta = false;                           // spec.rosetta (macOS only)
  // Where the guest's serial console goes. Not a manifest field: vmlet sets it
  // to <state-dir>/vms/<namespace>/<name>/serial.log when it boots the VM.
  std::string serial_log;

  VmKey key() const { return VmKey{ns, name}; }

  friend bool operator==(const VmSpec&, const VmSpec&) = default;
};

}  // namespace vmlet::api
