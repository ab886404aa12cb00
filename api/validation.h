#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"
#include "api/vm_spec.h"

namespace vmlet::api {

// One thing wrong with a spec: the manifest field path that is wrong
// ("spec.networks[0].mac") and why, in words an operator can act on.
struct FieldError {
  std::string field;
  std::string reason;

  friend bool operator==(const FieldError&, const FieldError&) = default;
};

// The drivers a manifest may name in spec.driver.
inline constexpr std::array<std::string_view, 3> kKnownDrivers = {"qemu", "cloud-hypervisor",
                                                                  "fake"};
bool IsKnownDriver(std::string_view driver);

// The seed's rules for a VM name, applied to namespaces too: 1..128
// characters from [A-Za-z0-9._-], not starting with '.' or '-'.
// Returns InvalidArgument with the broken rule as the message.
Status ValidateName(std::string_view value);

// Every rule a spec must satisfy whatever file or driver it comes from, in
// field order: the seed's (name and namespace, cpus >= 1, memory >= 1, a
// kernel), and vmlet's (known driver, clean absolute paths, TAP names, unicast
// MACs, unique TAPs/MACs/tags, base64 machine id, non-negative timeouts,
// rosetta only on macOS, label syntax). Empty when the spec is valid.
std::vector<FieldError> FindSpecErrors(const VmSpec& spec);

// OK, or InvalidArgument("<field>: <reason>") for the first error that
// FindSpecErrors() finds.
Status ValidateSpec(const VmSpec& spec);

// "52:54:00:12:34:56": six two-digit hex octets separated by ':'.
bool IsMacAddress(std::string_view text);
// Starts with '/' and has no ".." component (so it cannot climb out of a
// directory it was checked against).
bool IsCleanAbsolutePath(std::string_view path);

}  // namespace vmlet::api
