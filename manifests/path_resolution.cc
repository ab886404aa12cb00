#include "manifests/path_resolution.h"

#include <algorithm>
#include <system_error>
#include <utility>

#include "manifests/quoted_value.h"

namespace vmlet::manifests::internal {

namespace fs = std::filesystem;

fs::path ResolvePath(const std::string& path) {
  std::vector<std::string> pending;  // components still to walk, last first
  for (const fs::path& part : fs::path(path).lexically_normal()) {
    if (part != "/" && !part.empty()) pending.insert(pending.begin(), part.string());
  }
  fs::path resolved = "/";
  int links = 0;
  while (!pending.empty()) {
    std::string part = std::move(pending.back());
    pending.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      resolved = resolved.parent_path();
      continue;
    }
    fs::path next = resolved / part;
    std::error_code ec;
    if (links < 40 && fs::is_symlink(fs::symlink_status(next, ec))) {
      fs::path target = fs::read_symlink(next, ec);
      if (!ec) {
        ++links;
        if (target.is_absolute()) resolved = "/";
        std::vector<std::string> parts;
        for (const fs::path& t : target) {
          if (t != "/" && !t.empty()) parts.push_back(t.string());
        }
        pending.insert(pending.end(), parts.rbegin(), parts.rend());
        continue;
      }
    }
    resolved = std::move(next);
  }
  return resolved;
}

PathRoots::PathRoots(const std::vector<std::string>& roots, std::string_view flag) : flag_(flag) {
  for (const std::string& root : roots) {
    resolved_roots_.push_back(ResolvePath(root));
    root_list_ += (root_list_.empty() ? "" : ", ") + root;
  }
}

std::optional<std::string> PathRoots::WhyOutside(const std::string& path) const {
  fs::path resolved = ResolvePath(path);
  for (const fs::path& root : resolved_roots_) {
    auto [root_end, unused] =
        std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
    if (root_end == root.end()) return std::nullopt;
  }
  return "resolves to " + Quoted(resolved.string()) + ", outside every --" + flag_ + " (" +
         root_list_ + ")";
}

}  // namespace vmlet::manifests::internal
