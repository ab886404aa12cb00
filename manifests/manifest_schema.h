#pragma once

#include <string_view>

namespace vmlet::manifests::internal {

// The fields of each mapping a manifest holds, in the order the
// documentation lists them: the parser accepts exactly these (anything else
// is an unknown field) and ManifestFieldPaths() lists them. A new field or
// section is added here and read in SpecDocumentParser.
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
