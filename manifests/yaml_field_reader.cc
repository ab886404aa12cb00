#include "manifests/yaml_field_reader.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "manifests/field_suggestion.h"

namespace vmlet::manifests::internal {

std::string JoinFieldPath(std::string_view parent, std::string_view name) {
  if (parent.empty()) return std::string(name);
  return std::string(parent) + "." + std::string(name);
}

YamlFieldReader::YamlFieldReader(std::string_view file, std::string_view content,
                                 std::vector<ManifestError>& errors)
    : file_(file), content_(content), errors_(errors) {}

void YamlFieldReader::StartDocument(const YAML::Mark& mark) { document_location_ = Location(mark); }

SourceLocation YamlFieldReader::Location(const YAML::Mark& mark) const {
  if (mark.is_null()) return document_location_;
  return SourceLocation{std::string(file_), mark.line + 1, mark.column + 1};
}

void YamlFieldReader::Error(const YAML::Mark& mark, std::string field, std::string reason,
                            ErrorKind kind) {
  errors_.push_back(
      ManifestError{Location(mark), std::move(field), std::move(reason), kind, std::nullopt});
}

YAML::Mark YamlFieldReader::MarkOf(std::string path, const YAML::Mark& fallback) const {
  while (true) {
    if (auto it = marks_.find(path); it != marks_.end()) return it->second;
    size_t cut = path.find_last_of(".[");
    if (cut == std::string::npos) return fallback;
    path.resize(cut);
  }
}

void YamlFieldReader::RecordMark(const std::string& path, const YAML::Mark& mark) {
  marks_[path] = mark;
}

bool YamlFieldReader::TagOk(const YAML::Node& node, const std::string& path) {
  const std::string& tag = node.Tag();
  if (tag.empty() || tag == "?" || tag == "!" || tag.starts_with(kTagPrefix)) return true;
  Error(node.Mark(), path, "unsupported YAML tag " + Quoted(tag), ErrorKind::kWrongType);
  return false;
}

void YamlFieldReader::WrongType(const YAML::Node& node, const std::string& path,
                                std::string_view expected) {
  ValueType got = TypeOf(node);
  std::string reason = "must be " + std::string(expected) + ", got ";
  if (got == ValueType::kMismatched) {
    std::string_view tag = node.Tag();
    if (tag.starts_with(kTagPrefix)) tag.remove_prefix(kTagPrefix.size());
    reason += Quoted(node.Scalar()) + " tagged !!" + std::string(tag) + ", which it is not";
  } else {
    reason += TypeName(got);
  }
  if (node.IsScalar() && got != ValueType::kNull && got != ValueType::kMismatched) {
    reason += " " + Quoted(node.Scalar());
  }
  if (expected.find("string") != std::string_view::npos &&
      (got == ValueType::kInt || got == ValueType::kBool || got == ValueType::kFloat)) {
    reason += " (quote it to make it a string)";
  }
  Error(node.Mark(), path, std::move(reason), ErrorKind::kWrongType);
}

Fields YamlFieldReader::Mapping(const YAML::Node& node, const std::string& path,
                                std::span<const std::string_view> known) {
  Fields fields;
  std::map<std::string, YAML::Mark> first_seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: yaml-cpp's iterator hands out a temporary pair.
    const YAML::Node key = it->first;
    const YAML::Node value = it->second;
    if (!key.IsScalar()) {
      Error(key.Mark(), path.empty() ? "-" : path, "mapping keys must be strings",
            ErrorKind::kWrongType);
      continue;
    }
    const std::string& name = key.Scalar();
    std::string field = JoinFieldPath(path, name);
    if (auto seen = first_seen.find(name); seen != first_seen.end()) {
      Error(key.Mark(), field,
            "duplicate key " + Quoted(name) + " (first at line " +
                std::to_string(seen->second.line + 1) + ")",
            ErrorKind::kDuplicateKey);
      continue;
    }
    first_seen.emplace(name, key.Mark());
    if (!known.empty() && std::find(known.begin(), known.end(), name) == known.end()) {
      std::string reason = "unknown field " + Quoted(name);
      if (std::string hint = SuggestField(name, known); !hint.empty()) {
        reason += " (did you mean \"" + hint + "\"?)";
      }
      Error(key.Mark(), field, std::move(reason), ErrorKind::kUnknownField);
      continue;
    }
    marks_[field] = value.Mark();
    fields.emplace(name, Entry{key, value});
  }
  return fields;
}

std::optional<Fields> YamlFieldReader::MappingAt(const YAML::Node& node, const std::string& path,
                                                 std::span<const std::string_view> known) {
  if (!node.IsMap()) {
    WrongType(node, path, "a mapping");
    return std::nullopt;
  }
  return Mapping(node, path, known);
}

const Entry* YamlFieldReader::Find(const Fields& fields, std::string_view name) const {
  auto it = fields.find(name);
  return it == fields.end() ? nullptr : &it->second;
}

const Entry* YamlFieldReader::NonNull(const Fields& fields, std::string_view name) const {
  const Entry* e = Find(fields, name);
  if (e == nullptr || TypeOf(e->value) == ValueType::kNull) return nullptr;
  return e;
}

YAML::Mark YamlFieldReader::NullMark(const Entry& e) const {
  const YAML::Mark mark = e.value.Mark();
  if (mark.pos >= 0 && static_cast<size_t>(mark.pos) < content_.size()) {
    std::string_view at = content_.substr(static_cast<size_t>(mark.pos));
    for (std::string_view literal : {"null", "Null", "NULL", "~"}) {
      if (at.starts_with(literal)) return mark;
    }
  }
  return e.key.Mark();
}

const Entry* YamlFieldReader::Required(const Fields& fields, const YAML::Node& parent,
                                       std::string_view name, const std::string& parent_path) {
  const Entry* e = Find(fields, name);
  std::string field = JoinFieldPath(parent_path, name);
  if (e == nullptr) {
    Error(parent.Mark(), field, "required field is missing", ErrorKind::kMissingField);
    return nullptr;
  }
  if (TypeOf(e->value) == ValueType::kNull) {
    Error(NullMark(*e), field, "required field must not be empty", ErrorKind::kMissingField);
    return nullptr;
  }
  return e;
}

std::optional<std::string> YamlFieldReader::String(const YAML::Node& node,
                                                   const std::string& path) {
  if (!TagOk(node, path)) return std::nullopt;
  if (TypeOf(node) != ValueType::kString) {
    if (TypeOf(node) != ValueType::kNull) WrongType(node, path, "a string");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<bool> YamlFieldReader::Bool(const YAML::Node& node, const std::string& path) {
  if (!TagOk(node, path)) return std::nullopt;
  if (TypeOf(node) != ValueType::kBool) {
    WrongType(node, path, "a boolean (true or false)");
    return std::nullopt;
  }
  return IsPlainTrue(node.Scalar());
}

std::optional<int64_t> YamlFieldReader::Integer(const YAML::Node& node, const std::string& path,
                                                int64_t min, int64_t max) {
  if (!TagOk(node, path)) return std::nullopt;
  if (TypeOf(node) != ValueType::kInt) {
    WrongType(node, path, "an integer");
    return std::nullopt;
  }
  const std::optional<int64_t> value = PlainIntValue(node.Scalar());
  if (value && *value < 0 && min == 0) {
    Error(node.Mark(), path, "must not be negative, got " + node.Scalar(),
          ErrorKind::kInvalidValue);
    return std::nullopt;
  }
  if (!value || *value < min || *value > max) {
    Error(node.Mark(), path,
          "integer " + node.Scalar() + " is out of range (" + std::to_string(min) + ".." +
              std::to_string(max) + ")",
          ErrorKind::kInvalidValue);
    return std::nullopt;
  }
  return value;
}

std::optional<std::chrono::seconds> YamlFieldReader::Seconds(const YAML::Node& node,
                                                             const std::string& path) {
  constexpr int64_t kLimit = int64_t{1} << 40;
  auto v = Integer(node, path, -kLimit, kLimit);
  if (!v) return std::nullopt;
  return std::chrono::seconds(*v);
}

void YamlFieldReader::Constant(const Fields& fields, const YAML::Node& parent,
                               std::string_view name, std::string_view expected) {
  const Entry* e = Required(fields, parent, name);
  if (e == nullptr) return;
  std::optional<std::string> value = String(e->value, std::string(name));
  if (value && *value != expected) {
    Error(e->value.Mark(), std::string(name),
          "must be \"" + std::string(expected) + "\", got " + Quoted(*value),
          ErrorKind::kInvalidValue);
  }
}

void YamlFieldReader::RequiredString(const Fields& fields, const YAML::Node& parent,
                                     std::string_view name, const std::string& parent_path,
                                     std::string& out) {
  if (const Entry* e = Required(fields, parent, name, parent_path)) {
    if (auto v = String(e->value, JoinFieldPath(parent_path, name))) out = *v;
  }
}

void YamlFieldReader::OptionalString(const Fields& fields, std::string_view name,
                                     const std::string& parent_path,
                                     std::optional<std::string>& out) {
  const Entry* e = NonNull(fields, name);
  if (e == nullptr) return;
  out = String(e->value, JoinFieldPath(parent_path, name));
}

void YamlFieldReader::OptionalBool(const Fields& fields, std::string_view name,
                                   const std::string& parent_path, bool& out) {
  if (const Entry* e = NonNull(fields, name)) {
    if (auto v = Bool(e->value, JoinFieldPath(parent_path, name))) out = *v;
  }
}

}  // namespace vmlet::manifests::internal
