#pragma once

#include <compare>
#include <functional>
#include <ostream>
#include <string>

namespace vmlet::api {

// The identity of a VM on a host: its namespace and name (manifest
// metadata.namespace / metadata.name). Ordered by namespace, then name.
struct VmKey {
  std::string ns;  // "namespace" is a C++ keyword
  std::string name;

  // "<namespace>/<name>", the form used in logs, CLI arguments and errors.
  std::string ToString() const { return ns + "/" + name; }

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>.
  friend auto operator<=>(const VmKey&, const VmKey&) = default;
  friend bool operator==(const VmKey&, const VmKey&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const VmKey& key) {
  return os << key.ns << "/" << key.name;
}

struct VmKeyHash {
  size_t operator()(const VmKey& key) const {
    size_t h = std::hash<std::string>{}(key.ns);
    return h ^ (std::hash<std::string>{}(key.name) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  }
};

}  // namespace vmlet::api
