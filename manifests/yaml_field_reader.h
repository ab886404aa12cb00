#pragma once

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "manifests/manifest_error.h"
#include "manifests/quoted_value.h"
#include "manifests/yaml_scalar.h"

namespace vmlet::manifests::internal {

// One key/value pair of a mapping, with their nodes (for positions).
struct Entry {
  YAML::Node key;
  YAML::Node value;
};
// A mapping's pairs by key.
using Fields = std::map<std::string, Entry, std::less<>>;

// "parent.name", or "name" when `parent` is empty: a field's path.
std::string JoinFieldPath(std::string_view parent, std::string_view name);

// Reads typed values out of the YAML nodes of one manifest document,
// strictly (YAML 1.2 core schema types, no unknown or duplicate keys, no
// overflow), and records one ManifestError for each mistake: where it is
// (line and column in `file`), which field (its path, "spec.networks[0].mac")
// and why. A read that fails returns nothing and leaves its target as it was.
//
// Also remembers where each field's value is (MarkOf), so that errors found
// after reading (validation) can point at it too.
//
// Holds references to `content` and `errors`: they must outlive it.
class YamlFieldReader {
 public:
  // Errors are appended to `errors`; `content` is the text the nodes were
  // loaded from (to place errors about null values).
  YamlFieldReader(std::string_view file, std::string_view content,
                  std::vector<ManifestError>& errors);

  // Starts a document at `mark`: errors with no position of their own are
  // placed there. Call before reading the document's nodes.
  void StartDocument(const YAML::Mark& mark);
  const SourceLocation& document_location() const { return document_location_; }

  // Appends an error at `mark` (the document's start when `mark` is null).
  void Error(const YAML::Mark& mark, std::string field, std::string reason, ErrorKind kind);

  // Where a field's value is, for errors found after reading: the value
  // itself, or that of the closest enclosing field that was read, or
  // `fallback` when none was.
  YAML::Mark MarkOf(std::string path, const YAML::Mark& fallback) const;
  // Remembers where the value at `path` is (for list items; Mapping()
  // remembers the fields it reads).
  void RecordMark(const std::string& path, const YAML::Mark& mark);

  // The pairs of mapping `node` (whose path is `path`, "" for the top):
  // non-string keys, duplicate keys and, when `known` is not empty, keys not
  // in `known` (with a "did you mean" hint) are errors and left out.
  // REQUIRES: node.IsMap().
  Fields Mapping(const YAML::Node& node, const std::string& path,
                 std::span<const std::string_view> known);
  // The same after checking that `node` is a mapping: when it is not, an
  // error ("must be a mapping") and nothing.
  std::optional<Fields> MappingAt(const YAML::Node& node, const std::string& path,
                                  std::span<const std::string_view> known);

  // Reads `node`, a list of mappings each with the fields `known`, into
  // `items`: each item is appended, read by `read_item(fields, item node,
  // item path, item)`; an item that is not a mapping is an error (it must
  // be `expected`, e.g. "a mapping with tap and mac") and is appended as a
  // default T. When `node` is not a list: an error and nothing appended.
  template <typename T>
  void ListOfMappings(const YAML::Node& node, const std::string& path, std::string_view expected,
                      std::span<const std::string_view> known, std::vector<T>& items,
                      const std::type_identity_t<std::function<void(
                          const Fields&, const YAML::Node&, const std::string&, T&)>>& read_item);

  // The pair named `name`, or nullptr when absent.
  const Entry* Find(const Fields& fields, std::string_view name) const;
  // The pair named `name`, or nullptr when absent or null.
  const Entry* NonNull(const Fields& fields, std::string_view name) const;
  // The pair named `name`, or nullptr and an error (kMissingField) when it
  // is absent (placed at `parent`, the enclosing mapping) or null.
  const Entry* Required(const Fields& fields, const YAML::Node& parent, std::string_view name,
                        const std::string& parent_path = "");

  // A string, or nothing (with an error unless the value is null).
  std::optional<std::string> String(const YAML::Node& node, const std::string& path);
  // A boolean (true or false), or nothing and an error.
  std::optional<bool> Bool(const YAML::Node& node, const std::string& path);
  // An integer in [min, max], or nothing and an error: out-of-range values
  // (including ones that do not fit in 64 bits) are errors, never wrapped.
  std::optional<int64_t> Integer(const YAML::Node& node, const std::string& path, int64_t min,
                                 int64_t max);
  // Whole seconds, bounded so that adding them to a time point cannot
  // overflow; negative values are read (rules about them are validation's).
  std::optional<std::chrono::seconds> Seconds(const YAML::Node& node, const std::string& path);

  // Field `name` of `fields` must be present and the string `expected`.
  void Constant(const Fields& fields, const YAML::Node& parent, std::string_view name,
                std::string_view expected);
  // Required string field `name` into `out`.
  void RequiredString(const Fields& fields, const YAML::Node& parent, std::string_view name,
                      const std::string& parent_path, std::string& out);
  // Optional string field `name` into `out`: left as it is when absent or
  // null, reset (with an error) when it is not a string.
  void OptionalString(const Fields& fields, std::string_view name, const std::string& parent_path,
                      std::optional<std::string>& out);
  // Optional boolean field `name` into `out`: left as it is when absent or null.
  void OptionalBool(const Fields& fields, std::string_view name, const std::string& parent_path,
                    bool& out);
  // Optional enum field `name` into `out`: left as it is when absent or null;
  // `parse` reads the string; `allowed` lists the values for the error.
  template <typename E>
  void Enum(const Fields& fields, std::string_view name, const std::string& parent_path,
            std::optional<E> (*parse)(std::string_view), std::string_view allowed, E& out);

  // An error that `node` is not `expected` ("a string", "a list", ...),
  // saying what it is instead.
  void WrongType(const YAML::Node& node, const std::string& path, std::string_view expected);

 private:
  SourceLocation Location(const YAML::Mark& mark) const;
  // False, with an error, for tags other than YAML's standard ones.
  bool TagOk(const YAML::Node& node, const std::string& path);
  // Where a null value is: the value when it is written (`null`, `~`), the
  // key when it is implicit (`kernel:` and nothing), because yaml-cpp places
  // an implicit null at the next token, which may be on another line.
  YAML::Mark NullMark(const Entry& entry) const;

  std::string_view file_;
  std::string_view content_;
  std::vector<ManifestError>& errors_;
  SourceLocation document_location_;
  std::map<std::string, YAML::Mark> marks_;  // field path -> its value's position
};

template <typename T>
void YamlFieldReader::ListOfMappings(
    const YAML::Node& node, const std::string& path, std::string_view expected,
    std::span<const std::string_view> known, std::vector<T>& items,
    const std::type_identity_t<
        std::function<void(const Fields&, const YAML::Node&, const std::string&, T&)>>& read_item) {
  if (!node.IsSequence()) {
    WrongType(node, path, "a list");
    return;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    const YAML::Node item = node[i];
    const std::string item_path = path + "[" + std::to_string(i) + "]";
    RecordMark(item_path, item.Mark());
    T value;
    if (!item.IsMap()) {
      WrongType(item, item_path, expected);
    } else {
      read_item(Mapping(item, item_path, known), item, item_path, value);
    }
    items.push_back(std::move(value));
  }
}

template <typename E>
void YamlFieldReader::Enum(const Fields& fields, std::string_view name,
                           const std::string& parent_path,
                           std::optional<E> (*parse)(std::string_view), std::string_view allowed,
                           E& out) {
  const Entry* e = NonNull(fields, name);
  if (e == nullptr) return;
  std::string path = JoinFieldPath(parent_path, name);
  std::optional<std::string> text = String(e->value, path);
  if (!text) return;
  if (std::optional<E> value = parse(*text)) {
    out = *value;
  } else {
    Error(e->value.Mark(), path,
          "must be one of " + std::string(allowed) + ", got " + Quoted(*text),
          ErrorKind::kInvalidValue);
  }
}

}  // namespace vmlet::manifests::internal
