#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/vm_spec.h"
#include "manifests/manifest_error.h"
#include "manifests/manifest_parser.h"
#include "manifests/yaml_field_reader.h"

namespace vmlet::manifests::internal {

class PathRoots;

// Turns one loaded manifest document into a VmSpec: reads every field
// (strictly, see YamlFieldReader), applies the defaults, validates the spec
// (api::FindSpecErrors), and checks its paths against --image-root and
// --share-root. Every mistake is appended to the errors vector given, tagged
// with the VM's key (and node name) when its metadata was readable.
//
// One instance per document. Reading is split by section: each mapping or
// list of the manifest (metadata, spec, spec.readiness, spec.networks, ...)
// has its own small function, and its fields are listed in
// manifest_schema.h.
//
// Holds references to its arguments: they must outlive it. May throw what
// yaml-cpp throws on a malformed node graph; ParseManifest catches it.
class SpecDocumentParser {
 public:
  SpecDocumentParser(std::string_view file, std::string_view content, const ParseOptions& options,
                     std::vector<ManifestError>& errors);

  // The VM `doc` defines, or nothing when the document has any error (then
  // the errors were appended). Call once.
  std::optional<ManifestVm> Parse(const YAML::Node& doc);

 private:
  // Reading, section by section, into `spec`.
  void Document(const YAML::Node& doc, api::VmSpec& spec);
  void Metadata(const YAML::Node& node, api::VmSpec& spec);
  void Labels(const YAML::Node& node, api::VmSpec& spec);
  void Spec(const YAML::Node& node, api::VmSpec& spec);
  void SpecScalars(const Fields& fields, const YAML::Node& node, api::VmSpec& spec);
  void RequireNodeName(const api::VmSpec& spec, size_t errors_before_spec);
  void Readiness(const YAML::Node& node, api::VmSpec& spec);
  void Networks(const YAML::Node& node, api::VmSpec& spec);
  void SharedDirs(const YAML::Node& node, api::VmSpec& spec);

  // After reading.
  static void ApplyDefaults(api::VmSpec& spec);
  void ReportSpecErrors(const api::VmSpec& spec, size_t errors_before);
  void CheckImageRoots(const api::VmSpec& spec);
  void CheckShareRoots(const api::VmSpec& spec);
  // An error of `kind` at `field` when `path` is set and outside `roots`.
  void CheckInsideRoots(const PathRoots& roots, ErrorKind kind, const std::string& field,
                        const std::optional<std::string>& path);
  void TagErrorsWithVm(const api::VmSpec& spec, size_t errors_before);

  // Where a validation error about `field` belongs.
  YAML::Mark MarkOf(const std::string& field) const;

  const ParseOptions& options_;
  std::vector<ManifestError>& errors_;
  YamlFieldReader reader_;
  YAML::Mark spec_mark_;
  std::map<std::string, YAML::Mark> label_key_marks_;  // "metadata.labels.<k>" -> the key
};

}  // namespace vmlet::manifests::internal
