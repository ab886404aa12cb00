#pragma once

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "api/vm_key.h"

namespace vmlet::manifests {

// A place in a manifest file. Line and column are 1-based; 0 means unknown
// (an error about the whole file, such as one that cannot be read).
struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;

  // "FILE:LINE:COL", or "FILE" when the line is unknown.
  std::string ToString() const;

  friend bool operator==(const SourceLocation&, const SourceLocation&) = default;
};

// What kind of mistake a manifest error is. The name (ErrorKindName) is the
// `reason` label of vmlet_manifest_errors_total.
enum class ErrorKind {
  kIo,                   // the file could not be read, or is too large
  kSyntax,               // not valid YAML / JSON
  kNoDocuments,          // the file holds no VirtualMachine document
  kUnknownField,         // a field the schema does not have
  kDuplicateKey,         // the same key twice in one mapping
  kMissingField,         // a required field is absent
  kWrongType,            // e.g. a string where a number belongs
  kInvalidValue,         // right type, wrong value (enum, range, syntax of a MAC, ...)
  kDuplicateVm,          // two documents define the same namespace/name
  kOutsideImageRoot,     // a path that does not resolve inside any --image-root
  kOutsideShareRoot,     // a shared dir that does not resolve inside any --share-root
  kUnsupportedByDriver,  // a field the chosen driver cannot honour
};

// "io", "syntax", "no_documents", "unknown_field", "duplicate_key",
// "missing_field", "wrong_type", "invalid_value", "duplicate_vm",
// "outside_image_root", "outside_share_root", "unsupported_by_driver".
std::string_view ErrorKindName(ErrorKind kind);

// One thing wrong with a manifest, with everything an operator needs to fix
// it: where (file:line:column of the offending key or value, or of the
// enclosing mapping for a missing field), which field ("spec.networks[0].mac";
// "-" when the error is about the file or document as a whole) and why.
struct ManifestError {
  SourceLocation location;
  std::string field;
  std::string reason;
  ErrorKind kind = ErrorKind::kInvalidValue;
  // The VM the error belongs to, when its metadata could be read.
  std::optional<api::VmKey> key;
  // The node its document places the VM on, when spec.nodeName could be
  // read: decides which vmlet of a fleet shows the error (DesiredCache).
  std::optional<std::string> node_name = std::nullopt;

  // "FILE:LINE:COL: FIELD: REASON", as `vmlet validate` prints it.
  std::string ToString() const;

  friend bool operator==(const ManifestError&, const ManifestError&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const ManifestError& e) {
  return os << e.ToString();
}

}  // namespace vmlet::manifests
