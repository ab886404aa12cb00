#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "api/vm_spec.h"

namespace vmlet::manifests {

// The spec in its manifest shape (camelCase, as `spec:` in a manifest, plus
// `metadata`), for status files, the API and `vmlet get -o json`. Optional
// fields that are unset are omitted.
nlohmann::json SpecToJson(const api::VmSpec& spec);

// A hash of what the VMM is booted with (driver, kernel, initramfs, cmdline,
// disks, cpus, memory, networks, shared dirs, netns, vsock, machine id, EFI
// store, rosetta): 16 hex digits of SHA-256 over their canonical JSON.
// A running VM whose boot hash changes is recreated. Fields that change only
// how vmlet manages the VM (desiredState, restartPolicy, nodeName, readiness,
// stopGracePeriodSeconds, labels) are left out, so editing them never reboots
// a guest.
std::string BootHash(const api::VmSpec& spec);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(std::string_view data);

}  // namespace vmlet::manifests
