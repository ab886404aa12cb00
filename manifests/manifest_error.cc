#include "manifests/manifest_error.h"

namespace vmlet::manifests {

std::string SourceLocation::ToString() const {
  if (line <= 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kIo:
      return "io";
    case ErrorKind::kSyntax:
      return "syntax";
    case ErrorKind::kNoDocuments:
      return "no_documents";
    case ErrorKind::kUnknownField:
      return "unknown_field";
    case ErrorKind::kDuplicateKey:
      return "duplicate_key";
    case ErrorKind::kMissingField:
      return "missing_field";
    case ErrorKind::kWrongType:
      return "wrong_type";
    case ErrorKind::kInvalidValue:
      return "invalid_value";
    case ErrorKind::kDuplicateVm:
      return "duplicate_vm";
    case ErrorKind::kOutsideImageRoot:
      return "outside_image_root";
    case ErrorKind::kOutsideShareRoot:
      return "outside_share_root";
    case ErrorKind::kUnsupportedByDriver:
      return "unsupported_by_driver";
  }
  return "unknown";
}

std::string ManifestError::ToString() const {
  std::string out = location.ToString();
  if (location.line <= 0) out += ":0:0";
  out += ": ";
  out += field.empty() ? "-" : field;
  out += ": ";
  out += reason;
  return out;
}

}  // namespace vmlet::manifests
