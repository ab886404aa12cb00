#include "api/validation.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <set>

namespace vmlet::api {
namespace {

bool IsAsciiAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool IsHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// Linux interface names: IFNAMSIZ is 16 with the NUL.
constexpr size_t kMaxInterfaceName = 15;
// virtio-fs carries the tag in a 36-byte field.
constexpr size_t kMaxFsTag = 36;
// x86's COMMAND_LINE_SIZE.
constexpr size_t kMaxKernelCmdline = 2048;
// Label keys and values, as Kubernetes has them (so label selectors behave the same).
constexpr size_t kMaxLabelName = 63;
constexpr size_t kMaxLabelPrefix = 253;

bool IsLabelName(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabelName) return false;
  if (!IsAsciiAlnum(s.front()) || !IsAsciiAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAsciiAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool IsDnsSubdomain(std::string_view s) {
  if (s.empty() || s.size() > kMaxLabelPrefix) return false;
  if (!IsAsciiAlnum(s.front()) || !IsAsciiAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

std::string LabelKeyProblem(std::string_view key) {
  std::string_view name = key;
  if (auto slash = key.find('/'); slash != std::string_view::npos) {
    std::string_view prefix = key.substr(0, slash);
    name = key.substr(slash + 1);
    if (!IsDnsSubdomain(prefix)) {
      return "label key prefix \"" + std::string(prefix) +
             "\" must be a lowercase DNS subdomain of at most 253 characters";
    }
  }
  if (!IsLabelName(name)) {
    return "label key \"" + std::string(key) +
           "\" must be 1..63 characters of [A-Za-z0-9._-], starting and ending with a letter "
           "or digit, with an optional \"prefix/\"";
  }
  return "";
}

bool IsBase64(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return false;
  size_t pad = 0;
  if (s.back() == '=') pad = (s[s.size() - 2] == '=') ? 2 : 1;
  for (size_t i = 0; i < s.size() - pad; ++i) {
    char c = s[i];
    if (!(IsAsciiAlnum(c) || c == '+' || c == '/')) return false;
  }
  return true;
}

bool IsNetnsName(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.front() == '.' || s.front() == '-') return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAsciiAlnum(c) || c == '-' || c == '_' || c == '.'; });
}

bool IsNodeName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  if (!IsAsciiAlnum(s.front()) || !IsAsciiAlnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return IsAsciiAlnum(c) || c == '-' || c == '.'; });
}

class Checker {
 public:
  void Add(std::string field, std::string reason) {
    errors_.push_back(FieldError{std::move(field), std::move(reason)});
  }

  void Name(const std::string& field, std::string_view value) {
    Status s = ValidateName(value);
    if (!s.ok()) Add(field, s.message());
  }

  void Path(const std::string& field, std::string_view path) {
    if (path.empty()) {
      Add(field, "must not be empty");
    } else if (path.find('\0') != std::string_view::npos) {
      Add(field, "must not contain a NUL character");
    } else if (path.front() != '/') {
      Add(field, "must be an absolute path (starting with '/'), got \"" + std::string(path) + "\"");
    } else if (!IsCleanAbsolutePath(path)) {
      Add(field, "must not contain a \"..\" component, got \"" + std::string(path) + "\"");
    }
  }

  void OptionalPath(const std::string& field, const std::optional<std::string>& path) {
    if (path) Path(field, *path);
  }

  std::vector<FieldError> Take() { return std::move(errors_); }

 private:
  std::vector<FieldError> errors_;
};

void CheckMetadata(const VmSpec& spec, Checker& c) {
  c.Name("metadata.name", spec.name);
  c.Name("metadata.namespace", spec.ns);
  for (const auto& [key, value] : spec.labels) {
    std::string field = "metadata.labels." + key;
    if (std::string problem = LabelKeyProblem(key); !problem.empty()) {
      c.Add(field, problem);
    } else if (!value.empty() && !IsLabelName(value)) {
      c.Add(field,
            "label value must be empty or 1..63 characters of [A-Za-z0-9._-], starting and "
            "ending with a letter or digit");
    }
  }
}

// Which driver runs the VM, where, and how long vmlet waits for it.
void CheckPlacement(const VmSpec& spec, Checker& c) {
  if (spec.driver.empty()) {
    c.Add("spec.driver", "must name a driver (qemu, cloud-hypervisor or fake)");
  } else if (!IsKnownDriver(spec.driver)) {
    c.Add("spec.driver",
          "unknown driver \"" + spec.driver + "\" (known: qemu, cloud-hypervisor, fake)");
  }
  if (spec.node_name && !IsNodeName(*spec.node_name)) {
    c.Add("spec.nodeName",
          "must be a host name: 1..253 characters of [A-Za-z0-9.-], starting and ending with a "
          "letter or digit");
  }
  if (spec.readiness_timeout.count() < 0) {
    c.Add("spec.readiness.timeoutSeconds", "must not be negative");
  }
  if (spec.stop_grace_period.count() < 0) {
    c.Add("spec.stopGracePeriodSeconds", "must not be negative");
  }
}

void CheckBootFiles(const VmSpec& spec, Checker& c) {
  if (spec.kernel.empty()) {
    c.Add("spec.kernel", "kernel path must not be empty");
  } else {
    c.Path("spec.kernel", spec.kernel);
  }
  c.OptionalPath("spec.initramfs", spec.initramfs);
  c.OptionalPath("spec.rootDisk", spec.root_disk);
  c.OptionalPath("spec.dataDisk", spec.data_disk);
  c.OptionalPath("spec.seedIso", spec.seed_iso);
}

void CheckResources(const VmSpec& spec, Checker& c) {
  if (spec.cpus == 0) c.Add("spec.cpus", "cpus must be at least 1");
  if (spec.memory_mb == 0) {
    c.Add("spec.memoryMb", "memoryMb must be at least 1");
  } else if (spec.memory_mb > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) >> 20) {
    c.Add("spec.memoryMb", "memoryMb is too large: the size in bytes must fit in 63 bits");
  }
}

// `macs` holds the (lowercased) MACs of the networks before this one.
void CheckMac(const std::string& field, const std::string& mac, std::set<std::string>& macs,
              Checker& c) {
  if (!IsMacAddress(mac)) {
    c.Add(field, "must be a MAC address like 52:54:00:12:34:56, got \"" + mac + "\"");
  } else if (HexValue(mac[1]) & 1) {
    c.Add(field, "must be a unicast address (the first octet must be even), got \"" + mac + "\"");
  } else if (mac == "00:00:00:00:00:00") {
    c.Add(field, "must not be all zeros");
  } else {
    std::string lower = mac;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](char ch) { return static_cast<char>(std::tolower(ch)); });
    if (!macs.insert(lower).second) c.Add(field, "MAC " + mac + " is used twice");
  }
}

void CheckNetworks(const std::vector<NetworkAttachment>& networks, Checker& c) {
  std::set<std::string> taps;
  std::set<std::string> macs;
  for (size_t i = 0; i < networks.size(); ++i) {
    const NetworkAttachment& net = networks[i];
    std::string at = "spec.networks[" + std::to_string(i) + "]";
    const std::string& tap = net.tap;
    bool tap_chars_ok = std::all_of(
        tap.begin(), tap.end(), [](char ch) { return IsAsciiAlnum(ch) || ch == '-' || ch == '_'; });
    if (tap.empty() || tap.size() > kMaxInterfaceName || !tap_chars_ok) {
      c.Add(at + ".tap", "TAP name must be 1..15 characters of [A-Za-z0-9_-], got \"" + tap + "\"");
    } else if (!taps.insert(tap).second) {
      c.Add(at + ".tap", "TAP \"" + tap + "\" is attached twice");
    }
    if (net.mac) CheckMac(at + ".mac", *net.mac, macs, c);
  }
}

void CheckSharedDirs(const std::vector<SharedDir>& shared_dirs, Checker& c) {
  std::set<std::string> tags;
  for (size_t i = 0; i < shared_dirs.size(); ++i) {
    const SharedDir& dir = shared_dirs[i];
    std::string at = "spec.sharedDirs[" + std::to_string(i) + "]";
    c.Path(at + ".hostPath", dir.host_path);
    const std::string& tag = dir.tag;
    bool tag_chars_ok = std::all_of(tag.begin(), tag.end(), [](char ch) {
      return IsAsciiAlnum(ch) || ch == '-' || ch == '_' || ch == '.';
    });
    if (tag.empty() || tag.size() > kMaxFsTag || !tag_chars_ok) {
      c.Add(at + ".tag", "tag must be 1..36 characters of [A-Za-z0-9._-], got \"" + tag + "\"");
    } else if (!tags.insert(tag).second) {
      c.Add(at + ".tag", "tag \"" + tag + "\" is used by another shared directory");
    }
  }
}

// The kernel command line and what the guest sees of its host.
void CheckGuestOptions(const VmSpec& spec, Checker& c) {
  if (spec.cmdline) {
    if (spec.cmdline->size() > kMaxKernelCmdline) {
      c.Add("spec.cmdline", "kernel command line must be at most 2048 bytes (got " +
                                std::to_string(spec.cmdline->size()) + ")");
    } else if (spec.cmdline->find_first_of(std::string_view("\n\r\0", 3)) != std::string::npos) {
      c.Add("spec.cmdline", "kernel command line must be one line (no newline or NUL)");
    }
  }
  if (spec.netns && !IsNetnsName(*spec.netns)) {
    c.Add("spec.netns",
          "must be a network namespace name: 1..64 characters of [A-Za-z0-9._-], not starting "
          "with '.' or '-'");
  }
  if (spec.machine_id && !IsBase64(*spec.machine_id)) {
    c.Add("spec.machineId", "must be base64 (A-Z a-z 0-9 + /, padded with '=')");
  }
  c.OptionalPath("spec.efiVariableStore", spec.efi_variable_store);
  if (spec.rosetta && IsKnownDriver(spec.driver)) {
    c.Add("spec.rosetta",
          "Rosetta exists only on macOS (Apple Virtualization.framework); driver \"" + spec.driver +
              "\" runs on Linux: remove the field or set it to false");
  }
}

}  // namespace

bool IsKnownDriver(std::string_view driver) {
  return std::find(kKnownDrivers.begin(), kKnownDrivers.end(), driver) != kKnownDrivers.end();
}

Status ValidateName(std::string_view value) {
  if (value.empty()) return Status::InvalidArgument("must not be empty");
  if (value.size() > 128) {
    return Status::InvalidArgument("must be 128 characters or fewer (got " +
                                   std::to_string(value.size()) + ")");
  }
  for (char c : value) {
    if (!(IsAsciiAlnum(c) || c == '-' || c == '_' || c == '.')) {
      return Status::InvalidArgument(
          "must contain only alphanumeric characters, hyphens, underscores, and dots");
    }
  }
  if (value.front() == '.' || value.front() == '-') {
    return Status::InvalidArgument("must not start with '.' or '-'");
  }
  return Status::Ok();
}

bool IsMacAddress(std::string_view text) {
  if (text.size() != 17) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (i % 3 == 2) {
      if (text[i] != ':') return false;
    } else if (!IsHexDigit(text[i])) {
      return false;
    }
  }
  return true;
}

bool IsCleanAbsolutePath(std::string_view path) {
  if (path.empty() || path.front() != '/') return false;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (path.substr(start, end - start) == "..") return false;
    start = end + 1;
  }
  return true;
}

std::vector<FieldError> FindSpecErrors(const VmSpec& spec) {
  // The errors come out in this order, which callers show as it is.
  Checker c;
  CheckMetadata(spec, c);
  CheckPlacement(spec, c);
  CheckBootFiles(spec, c);
  CheckResources(spec, c);
  CheckNetworks(spec.networks, c);
  CheckSharedDirs(spec.shared_dirs, c);
  CheckGuestOptions(spec, c);
  return c.Take();
}

Status ValidateSpec(const VmSpec& spec) {
  std::vector<FieldError> errors = FindSpecErrors(spec);
  if (errors.empty()) return Status::Ok();
  return Status::InvalidArgument(errors.front().field + ": " + errors.front().reason);
}

}  // namespace vmlet::api
