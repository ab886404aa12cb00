#pragma once

#include <string_view>

namespace vmlet::manifests::internal {

// The fields of each mapping a manifest holds: the parser accepts exactly
// these (anything else is an unknown field, with a "did you mean" among
// them), and ManifestFieldPaths() lists them in this order for the test that
// checks docs/manifests.md. A new field or section is added here and read in
// SpecDocumentParser.
inline constexpr std::string_view kTopFields[] = {"apiVersion", "kind", "metadata", "spec"};
inline constexpr std::string_view kMetadataFields[] = {"name", "namespace", "labels"};
inline constexpr std::string_view kSpecFields[] = {
    "desiredState", "restartPolicy", "driver",
    "nodeName",     "kernel",        "initramfs",
    "cmdline",      "rootDisk",      "dataDisk",
    "seedIso",      "cpus",          "memoryMb",
    "networks",     "sharedDirs",    "netns",
    "vsock",        "machineId",     "efiVariableStore",
    "rosetta",      "readiness",     "stopGracePeriodSeconds"};
inline constexpr std::string_view kReadinessFields[] = {"timeoutSeconds"};
inline constexpr std::string_view kNetworkFields[] = {"tap", "mac"};
inline constexpr std::string_view kSharedDirFields[] = {"hostPath", "tag", "readOnly"};

}  // namespace vmlet::manifests::internal
