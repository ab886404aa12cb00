#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/vm_spec.h"
#include "manifests/manifest_error.h"

namespace vmlet::manifests {

inline constexpr std::string_view kApiVersion = "vmlet.dev/v1alpha1";
inline constexpr std::string_view kKind = "VirtualMachine";
// Larger files are refused unread: a manifest is a few hundred bytes.
inline constexpr size_t kMaxManifestBytes = 1 << 20;

struct ParseOptions {
  // The driver of a manifest that names none (vmlet's --default-driver).
  std::string default_driver = "qemu";
  // When not empty, every path field (kernel, initramfs, rootDisk, dataDisk,
  // seedIso, efiVariableStore) must resolve, symlinks followed, inside one of
  // these directories (vmlet's --image-root). Checking reads the file system.
  std::vector<std::string> image_roots;
  // When not empty, every spec.sharedDirs[].hostPath must resolve, symlinks
  // followed, inside one of these directories (vmlet's --share-root): a
  // manifest cannot hand a guest /etc or /root. Checking reads the file system.
  std::vector<std::string> share_roots;
  // Every manifest must name its host in spec.nodeName (vmlet's
  // --require-node-name): a fleet repository must never start one VM on
  // every host that reads it.
  bool require_node_name = false;
};

// One valid VirtualMachine document: its spec, defaults applied, and where
// its document starts.
struct ManifestVm {
  api::VmSpec spec;
  SourceLocation location;
};

struct ParseResult {
  std::vector<ManifestVm> vms;        // the valid documents, in file order
  std::vector<ManifestError> errors;  // every error found, in file order
};

// Parses one manifest file: YAML with one or more documents ("---"), or JSON
// (when `file` ends in ".json"). `file` is used for extension and error
// locations only; nothing is read from disk except to check image roots.
//
// Strict: unknown fields at every level, duplicate keys, wrong types (a
// quoted "2" is not a number; 2 is not a string), integers that overflow, and
// values api::FindSpecErrors() rejects are all errors. A document with any
// error yields no VM, only errors (each with the VM's key when its metadata
// was readable); the other documents of the file are still returned. A file
// with a syntax error yields that error alone. Defaults (docs/manifests.md) are
// applied before validation; a network without a MAC gets a stable one
// derived from namespace, name and index.
//
// Never throws; safe on any input (fuzzed).
ParseResult ParseManifest(std::string_view file, std::string_view content,
                          const ParseOptions& options);

// The MAC a network gets when its manifest gives none: 52:54:00 (QEMU's
// prefix) and three bytes of SHA-256("<namespace>/<name>/<index>"), so it is
// the same on every host and every vmlet version.
std::string DefaultMac(const api::VmKey& key, size_t index);

// Every field a manifest may hold, as a path ("spec.networks[].mac"), in
// the order the parser declares them: the parser accepts exactly these
// (anything else is an unknown field). docs/manifests.md's field reference is
// checked against this list by a test.
const std::vector<std::string>& ManifestFieldPaths();

}  // namespace vmlet::manifests
