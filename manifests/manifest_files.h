#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "manifests/manifest_error.h"
#include "manifests/manifest_parser.h"

namespace vmlet::manifests {

// True for a file name vmlet reads as a manifest: it ends in .yaml, .yml or
// .json, does not start with '.', and is not an editor's temporary or backup
// file (*~, *.swp, *.tmp, #*#).
bool IsManifestFileName(std::string_view name);

struct FileListing {
  // Manifest files, sorted, as paths under the root ("root/sub/web.yaml");
  // symlinks are followed but the path names the link, not its target.
  std::vector<std::string> files;
  // Directories under the root that could not be read (their contents are
  // unknown, which is not the same as empty).
  std::vector<std::string> unreadable_dirs;
  std::vector<ManifestError> errors;  // one per unreadable directory
};

// Walks `root` (a directory, or a single file) for manifest files: recurses
// into subdirectories, skips names starting with '.' (so ".git", and the
// "..data" / "..2026_..." directories of a ConfigMap volume, are not walked;
// the files that link through "..data" are), follows symlinks, and visits a
// directory reached twice (a symlink loop) only once.
// Fails with NotFound / PermissionDenied / InvalidArgument when `root` itself
// is missing, unreadable, or neither a directory nor a regular file.
api::StatusOr<FileListing> ListManifestFiles(const std::string& root);

// Reads a manifest file whole. Fails when it cannot be read or is larger than
// kMaxManifestBytes.
api::StatusOr<std::string> ReadManifestFile(const std::string& path);

// Finds documents that define the same namespace/name (in one file or in
// several), removes every copy of each from `vms`, and returns one error per
// copy, each naming the other places.
std::vector<ManifestError> RemoveDuplicateVms(std::vector<ManifestVm>& vms);

struct LoadResult {
  std::vector<ManifestVm> vms;
  std::vector<ManifestError> errors;
};

// What `vmlet validate PATH...` checks: every manifest file under every path,
// parsed, validated, and checked for duplicates across all of them. A path
// that is missing or unreadable is an error (kIo) located at that path.
LoadResult LoadManifests(const std::vector<std::string>& paths, const ParseOptions& options);

}  // namespace vmlet::manifests
