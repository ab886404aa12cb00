#include "manifests/manifest_parser.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <exception>
#include <span>
#include <utility>

#include "manifests/manifest_schema.h"
#include "manifests/manifest_text_checks.h"
#include "manifests/spec_document_parser.h"
#include "manifests/spec_json.h"

namespace vmlet::manifests {
namespace {

ManifestError FileError(std::string_view file, int line, int column, std::string reason,
                        ErrorKind kind) {
  return ManifestError{SourceLocation{std::string(file), line, column}, "-", std::move(reason),
                       kind, std::nullopt};
}

// The first reason `content` is refused before it is loaded, if any: too
// large, not JSON (for a .json file), or characters YAML does not allow.
std::optional<ManifestError> CheckText(std::string_view file, std::string_view content, bool json) {
  if (content.size() > kMaxManifestBytes) {
    return FileError(file, 0, 0,
                     "file is larger than " + std::to_string(kMaxManifestBytes) + " bytes",
                     ErrorKind::kIo);
  }
  if (json) {
    if (auto error = internal::CheckJsonSyntax(file, content)) return error;
  }
  return internal::CheckCharacters(file, content);
}

// Loads the documents of `text` into `documents`, or returns the syntax
// error that stops it (yaml-cpp's, in words that name the real cause).
std::optional<ManifestError> LoadDocuments(std::string_view file, const std::string& text,
                                           bool json, std::vector<YAML::Node>& documents) {
  if (auto error = internal::CheckYamlMakesProgress(file, text)) return error;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    return FileError(file, e.mark.is_null() ? 1 : e.mark.line + 1,
                     e.mark.is_null() ? 1 : e.mark.column + 1, "invalid YAML: nested too deeply",
                     ErrorKind::kSyntax);
  } catch (const YAML::Exception& e) {
    int line = e.mark.is_null() ? 1 : e.mark.line + 1;
    int column = e.mark.is_null() ? 1 : e.mark.column + 1;
    std::string reason = "invalid " + std::string(json ? "JSON" : "YAML") + ": " + e.msg;
    // yaml-cpp blames the ':' after a tab-indented key; name the real cause.
    if (auto tab = internal::TabIndentation(text, line)) {
      column = *tab;
      reason = "invalid YAML: tabs are not allowed for indentation (use spaces)";
    }
    return FileError(file, line, column, std::move(reason), ErrorKind::kSyntax);
  } catch (const std::exception& e) {
    return FileError(file, 1, 1, std::string("cannot parse: ") + e.what(), ErrorKind::kSyntax);
  }
  return std::nullopt;
}

// Parses every non-empty document into `result`; returns how many there were.
size_t ParseDocuments(std::string_view file, const std::string& text, const ParseOptions& options,
                      const std::vector<YAML::Node>& documents, ParseResult& result) {
  size_t parsed = 0;
  for (const YAML::Node& doc : documents) {
    // Empty documents (a trailing "---", a file of comments) hold nothing.
    if (!doc.IsDefined() || doc.IsNull()) continue;
    ++parsed;
    try {
      internal::SpecDocumentParser parser(file, text, options, result.errors);
      if (auto vm = parser.Parse(doc)) result.vms.push_back(std::move(*vm));
    } catch (const std::exception& e) {
      // yaml-cpp may throw on malformed node graphs; a bad document must never
      // take vmlet down.
      result.errors.push_back(FileError(file, doc.Mark().line + 1, doc.Mark().column + 1,
                                        std::string("cannot read document: ") + e.what(),
                                        ErrorKind::kSyntax));
    }
  }
  return parsed;
}

}  // namespace

std::string DefaultMac(const api::VmKey& key, size_t index) {
  std::string digest =
      Sha256Hex(key.ns + "/" + key.name + "/" + std::to_string(index)).substr(0, 6);
  return "52:54:00:" + digest.substr(0, 2) + ":" + digest.substr(2, 2) + ":" + digest.substr(4, 2);
}

ParseResult ParseManifest(std::string_view file, std::string_view content,
                          const ParseOptions& options) {
  ParseResult result;
  const bool json = file.ends_with(".json");
  if (auto error = CheckText(file, content, json)) {
    result.errors.push_back(std::move(*error));
    return result;
  }
  const std::string text(content);
  std::vector<YAML::Node> documents;
  if (auto error = LoadDocuments(file, text, json, documents)) {
    result.errors.push_back(std::move(*error));
    return result;
  }
  const size_t parsed = ParseDocuments(file, text, options, documents, result);
  // Errors in reading order, whichever check found them.
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ManifestError& a, const ManifestError& b) {
                     return std::pair(a.location.line, a.location.column) <
                            std::pair(b.location.line, b.location.column);
                   });
  if (parsed == 0) {
    result.errors.push_back(FileError(
        file, 1, 1, "no VirtualMachine document in file (delete the file to delete its VMs)",
        ErrorKind::kNoDocuments));
  }
  return result;
}

const std::vector<std::string>& ManifestFieldPaths() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> out;
    auto add = [&out](std::string_view prefix, std::span<const std::string_view> fields) {
      for (std::string_view f : fields) out.push_back(std::string(prefix) + std::string(f));
    };
    add("", internal::kTopFields);
    add("metadata.", internal::kMetadataFields);
    add("spec.", internal::kSpecFields);
    add("spec.readiness.", internal::kReadinessFields);
    add("spec.networks[].", internal::kNetworkFields);
    add("spec.sharedDirs[].", internal::kSharedDirFields);
    return out;
  }();
  return paths;
}

}  // namespace vmlet::manifests
