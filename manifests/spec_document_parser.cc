#include "manifests/spec_document_parser.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

#include "api/validation.h"
#include "manifests/manifest_schema.h"
#include "manifests/path_resolution.h"

namespace vmlet::manifests::internal {
namespace {

// Whether one of two field paths is the other or encloses it
// ("spec.networks" and "spec.networks[0].mac"; not "spec.net" and "spec.netns").
bool RelatedFields(std::string_view a, std::string_view b) {
  if (a.size() > b.size()) std::swap(a, b);
  return b.starts_with(a) && (a.size() == b.size() || b[a.size()] == '.' || b[a.size()] == '[');
}

}  // namespace

SpecDocumentParser::SpecDocumentParser(std::string_view file, std::string_view content,
                                       const ParseOptions& options,
                                       std::vector<ManifestError>& errors)
    : options_(options), errors_(errors), reader_(file, content, errors) {}

std::optional<ManifestVm> SpecDocumentParser::Parse(const YAML::Node& doc) {
  reader_.StartDocument(doc.Mark());
  const size_t errors_before = errors_.size();
  if (!doc.IsMap()) {
    reader_.Error(doc.Mark(), "-",
                  "a manifest document must be a mapping (apiVersion, kind, metadata, "
                  "spec), got a " +
                      std::string(TypeName(TypeOf(doc))),
                  ErrorKind::kWrongType);
    return std::nullopt;
  }
  api::VmSpec spec;
  spec.driver = options_.default_driver;
  Document(doc, spec);
  ApplyDefaults(spec);
  ReportSpecErrors(spec, errors_before);
  if (errors_.size() == errors_before && !options_.image_roots.empty()) CheckImageRoots(spec);
  if (errors_.size() == errors_before && !options_.share_roots.empty()) CheckShareRoots(spec);
  TagErrorsWithVm(spec, errors_before);
  if (errors_.size() != errors_before) return std::nullopt;
  return ManifestVm{std::move(spec), reader_.document_location()};
}

void SpecDocumentParser::Document(const YAML::Node& doc, api::VmSpec& spec) {
  Fields top = reader_.Mapping(doc, "", kTopFields);
  reader_.Constant(top, doc, "apiVersion", kApiVersion);
  reader_.Constant(top, doc, "kind", kKind);
  if (const Entry* metadata = reader_.Required(top, doc, "metadata")) {
    Metadata(metadata->value, spec);
  }
  if (const Entry* s = reader_.Required(top, doc, "spec")) {
    spec_mark_ = s->value.Mark();
    const size_t errors_before_spec = errors_.size();
    Spec(s->value, spec);
    RequireNodeName(spec, errors_before_spec);
  }
}

void SpecDocumentParser::Metadata(const YAML::Node& node, api::VmSpec& spec) {
  std::optional<Fields> fields = reader_.MappingAt(node, "metadata", kMetadataFields);
  if (!fields) return;
  reader_.RequiredString(*fields, node, "name", "metadata", spec.name);
  std::optional<std::string> ns;
  reader_.OptionalString(*fields, "namespace", "metadata", ns);
  if (ns) spec.ns = *ns;
  if (const Entry* labels = reader_.NonNull(*fields, "labels")) Labels(labels->value, spec);
}

void SpecDocumentParser::Labels(const YAML::Node& node, api::VmSpec& spec) {
  if (!node.IsMap()) {
    reader_.WrongType(node, "metadata.labels", "a mapping of strings");
    return;
  }
  Fields entries = reader_.Mapping(node, "metadata.labels", {});
  for (const auto& [key, entry] : entries) {
    std::string path = "metadata.labels." + key;
    label_key_marks_[path] = entry.key.Mark();
    if (TypeOf(entry.value) == ValueType::kNull) {
      spec.labels[key] = "";
    } else if (auto v = reader_.String(entry.value, path)) {
      spec.labels[key] = *v;
    }
  }
}

void SpecDocumentParser::Spec(const YAML::Node& node, api::VmSpec& spec) {
  std::optional<Fields> fields = reader_.MappingAt(node, "spec", kSpecFields);
  if (!fields) return;
  SpecScalars(*fields, node, spec);
  // The sections: each is a mapping or a list of its own.
  if (const Entry* e = reader_.NonNull(*fields, "readiness")) Readiness(e->value, spec);
  if (const Entry* e = reader_.NonNull(*fields, "networks")) Networks(e->value, spec);
  if (const Entry* e = reader_.NonNull(*fields, "sharedDirs")) SharedDirs(e->value, spec);
}

// The fields directly under spec that hold one value each. Read in this
// order (not grouped by kind) so that errors sharing a position (an alias
// used twice) are reported in the order they always were.
void SpecDocumentParser::SpecScalars(const Fields& f, const YAML::Node& node, api::VmSpec& spec) {
  reader_.Enum(f, "desiredState", "spec", &api::ParseDesiredState, "Running, Paused, Stopped",
               spec.desired_state);
  reader_.Enum(f, "restartPolicy", "spec", &api::ParseRestartPolicy, "Always, OnFailure, Never",
               spec.restart_policy);
  std::optional<std::string> driver;
  reader_.OptionalString(f, "driver", "spec", driver);
  if (driver) spec.driver = *driver;
  reader_.OptionalString(f, "nodeName", "spec", spec.node_name);
  reader_.RequiredString(f, node, "kernel", "spec", spec.kernel);
  reader_.OptionalString(f, "initramfs", "spec", spec.initramfs);
  reader_.OptionalString(f, "cmdline", "spec", spec.cmdline);
  reader_.OptionalString(f, "rootDisk", "spec", spec.root_disk);
  reader_.OptionalString(f, "dataDisk", "spec", spec.data_disk);
  reader_.OptionalString(f, "seedIso", "spec", spec.seed_iso);
  reader_.OptionalString(f, "netns", "spec", spec.netns);
  reader_.OptionalString(f, "machineId", "spec", spec.machine_id);
  reader_.OptionalString(f, "efiVariableStore", "spec", spec.efi_variable_store);
  if (const Entry* e = reader_.NonNull(f, "cpus")) {
    if (auto v = reader_.Integer(e->value, "spec.cpus", 0, std::numeric_limits<uint32_t>::max())) {
      spec.cpus = static_cast<uint32_t>(*v);
    }
  }
  if (const Entry* e = reader_.NonNull(f, "memoryMb")) {
    if (auto v =
            reader_.Integer(e->value, "spec.memoryMb", 0, std::numeric_limits<int64_t>::max())) {
      spec.memory_mb = static_cast<uint64_t>(*v);
    }
  }
  reader_.OptionalBool(f, "vsock", "spec", spec.vsock);
  reader_.OptionalBool(f, "rosetta", "spec", spec.rosetta);
  if (const Entry* e = reader_.NonNull(f, "stopGracePeriodSeconds")) {
    if (auto v = reader_.Seconds(e->value, "spec.stopGracePeriodSeconds")) {
      spec.stop_grace_period = *v;
    }
  }
}

// Run after spec was read: a nodeName that failed to read already has its
// error.
void SpecDocumentParser::RequireNodeName(const api::VmSpec& spec, size_t errors_before_spec) {
  const bool node_name_failed =
      std::any_of(errors_.begin() + static_cast<std::ptrdiff_t>(errors_before_spec), errors_.end(),
                  [](const ManifestError& e) { return e.field == "spec.nodeName"; });
  if (options_.require_node_name && !spec.node_name && !node_name_failed) {
    reader_.Error(spec_mark_, "spec.nodeName",
                  "required here (--require-node-name): a fleet repository must name the host of "
                  "every VM",
                  ErrorKind::kMissingField);
  }
}

void SpecDocumentParser::Readiness(const YAML::Node& node, api::VmSpec& spec) {
  std::optional<Fields> fields = reader_.MappingAt(node, "spec.readiness", kReadinessFields);
  if (!fields) return;
  if (const Entry* e = reader_.NonNull(*fields, "timeoutSeconds")) {
    if (auto v = reader_.Seconds(e->value, "spec.readiness.timeoutSeconds")) {
      spec.readiness_timeout = *v;
    }
  }
}

void SpecDocumentParser::Networks(const YAML::Node& node, api::VmSpec& spec) {
  reader_.ListOfMappings<api::NetworkAttachment>(
      node, "spec.networks", "a mapping with tap and mac", kNetworkFields, spec.networks,
      [this](const Fields& f, const YAML::Node& item, const std::string& path,
             api::NetworkAttachment& net) {
        reader_.RequiredString(f, item, "tap", path, net.tap);
        reader_.OptionalString(f, "mac", path, net.mac);
      });
}

void SpecDocumentParser::SharedDirs(const YAML::Node& node, api::VmSpec& spec) {
  reader_.ListOfMappings<api::SharedDir>(
      node, "spec.sharedDirs", "a mapping with hostPath, tag and readOnly", kSharedDirFields,
      spec.shared_dirs,
      [this](const Fields& f, const YAML::Node& item, const std::string& path,
             api::SharedDir& dir) {
        reader_.RequiredString(f, item, "hostPath", path, dir.host_path);
        reader_.RequiredString(f, item, "tag", path, dir.tag);
        reader_.OptionalBool(f, "readOnly", path, dir.read_only);
      });
}

// Defaults that depend on other fields.
void SpecDocumentParser::ApplyDefaults(api::VmSpec& spec) {
  for (size_t i = 0; i < spec.networks.size(); ++i) {
    if (!spec.networks[i].mac) spec.networks[i].mac = DefaultMac(spec.key(), i);
  }
}

// Validates even after read errors, so one run shows every mistake; but
// skips fields (and their parents and children) that already have an error:
// a value that failed to read was left at its default and would only
// produce a second, misleading error.
void SpecDocumentParser::ReportSpecErrors(const api::VmSpec& spec, size_t errors_before) {
  std::vector<std::string> failed;
  for (size_t i = errors_before; i < errors_.size(); ++i) failed.push_back(errors_[i].field);
  for (const api::FieldError& e : api::FindSpecErrors(spec)) {
    if (std::any_of(failed.begin(), failed.end(),
                    [&](const std::string& f) { return RelatedFields(f, e.field); })) {
      continue;
    }
    ErrorKind kind =
        e.field == "spec.rosetta" ? ErrorKind::kUnsupportedByDriver : ErrorKind::kInvalidValue;
    YAML::Mark mark = MarkOf(e.field);
    if (e.reason.starts_with("label key")) {
      if (auto it = label_key_marks_.find(e.field); it != label_key_marks_.end()) {
        mark = it->second;
      }
    }
    reader_.Error(mark, e.field, e.reason, kind);
  }
}

void SpecDocumentParser::CheckInsideRoots(const PathRoots& roots, ErrorKind kind,
                                          const std::string& field,
                                          const std::optional<std::string>& path) {
  if (!path) return;
  if (std::optional<std::string> why = roots.WhyOutside(*path)) {
    reader_.Error(MarkOf(field), field, std::move(*why), kind);
  }
}

void SpecDocumentParser::CheckImageRoots(const api::VmSpec& spec) {
  const PathRoots roots(options_.image_roots, "image-root");
  const ErrorKind kind = ErrorKind::kOutsideImageRoot;
  CheckInsideRoots(roots, kind, "spec.kernel", spec.kernel);
  CheckInsideRoots(roots, kind, "spec.initramfs", spec.initramfs);
  CheckInsideRoots(roots, kind, "spec.rootDisk", spec.root_disk);
  CheckInsideRoots(roots, kind, "spec.dataDisk", spec.data_disk);
  CheckInsideRoots(roots, kind, "spec.seedIso", spec.seed_iso);
  CheckInsideRoots(roots, kind, "spec.efiVariableStore", spec.efi_variable_store);
}

void SpecDocumentParser::CheckShareRoots(const api::VmSpec& spec) {
  const PathRoots roots(options_.share_roots, "share-root");
  for (size_t i = 0; i < spec.shared_dirs.size(); ++i) {
    CheckInsideRoots(roots, ErrorKind::kOutsideShareRoot,
                     "spec.sharedDirs[" + std::to_string(i) + "].hostPath",
                     spec.shared_dirs[i].host_path);
  }
}

// Every error of this document names its VM when the name and namespace
// are valid, and the node it is placed on (unless that is what is wrong).
void SpecDocumentParser::TagErrorsWithVm(const api::VmSpec& spec, size_t errors_before) {
  std::optional<api::VmKey> key;
  if (api::ValidateName(spec.name).ok() && api::ValidateName(spec.ns).ok()) key = spec.key();
  for (size_t i = errors_before; i < errors_.size(); ++i) {
    errors_[i].key = key;
    if (errors_[i].field != "spec.nodeName") errors_[i].node_name = spec.node_name;
  }
}

YAML::Mark SpecDocumentParser::MarkOf(const std::string& field) const {
  return reader_.MarkOf(field, spec_mark_);
}

}  // namespace vmlet::manifests::internal
