#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vmlet::manifests::internal {

// Where `path` leads: absolute, with every symlink followed, even one whose
// target does not exist (yet): a dangling link inside an image root must not
// become a way out of it once its target appears. Components that do not
// exist are kept as written. Gives up following after 40 links (a loop) and
// keeps the path reached. Reads the file system (symlinks only).
std::filesystem::path ResolvePath(const std::string& path);

// The directories one flag (--image-root, --share-root) confines manifest
// paths to. Resolving reads the file system: the roots once, when
// constructed; a path each time it is checked.
class PathRoots {
 public:
  // `flag` is the flag's name without its dashes ("image-root"), for messages.
  PathRoots(const std::vector<std::string>& roots, std::string_view flag);

  // Nothing when `path`, resolved (ResolvePath), is one of the resolved
  // roots or inside one; otherwise why not, as an error reason:
  // `resolves to "/etc/x", outside every --image-root (/srv/a, /srv/b)`.
  std::optional<std::string> WhyOutside(const std::string& path) const;

 private:
  std::vector<std::filesystem::path> resolved_roots_;
  std::string root_list_;  // the roots as given, ", "-separated
  std::string flag_;
};

}  // namespace vmlet::manifests::internal
