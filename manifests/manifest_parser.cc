#include "manifests/manifest_parser.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "api/validation.h"
#include "manifests/spec_json.h"

namespace vmlet::manifests {
namespace {

namespace fs = std::filesystem;

// The fields of each mapping a manifest holds: the parser accepts exactly
// these, and ManifestFieldPaths() lists them for the documentation's test.
const std::vector<std::string_view> kTopFields = {"apiVersion", "kind", "metadata", "spec"};
const std::vector<std::string_view> kMetadataFields = {"name", "namespace", "labels"};
const std::vector<std::string_view> kSpecFields = {
    "desiredState", "restartPolicy", "driver",
    "nodeName",     "kernel",        "initramfs",
    "cmdline",      "rootDisk",      "dataDisk",
    "seedIso",      "cpus",          "memoryMb",
    "networks",     "sharedDirs",    "netns",
    "vsock",        "machineId",     "efiVariableStore",
    "rosetta",      "readiness",     "stopGracePeriodSeconds"};
const std::vector<std::string_view> kReadinessFields = {"timeoutSeconds"};
const std::vector<std::string_view> kNetworkFields = {"tap", "mac"};
const std::vector<std::string_view> kSharedDirFields = {"hostPath", "tag", "readOnly"};

// The type a YAML scalar (or node) has under the YAML 1.2 core schema, which
// is also how JSON reads: plain `2` is an integer, quoted "2" a string.
enum class ValueType {
  kNull,
  kBool,
  kInt,
  kFloat,
  kString,
  kMapping,
  kSequence,
  kMismatched,  // an explicit tag its text does not fit: `!!bool yes`, `!!int abc`
};

std::string_view TypeName(ValueType t) {
  switch (t) {
    case ValueType::kNull:
      return "null";
    case ValueType::kBool:
      return "boolean";
    case ValueType::kInt:
      return "integer";
    case ValueType::kFloat:
      return "number";
    case ValueType::kString:
      return "string";
    case ValueType::kMapping:
      return "mapping";
    case ValueType::kSequence:
      return "list";
    case ValueType::kMismatched:
      return "value that does not match its tag";
  }
  return "value";
}

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

bool IsPlainNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}
bool IsPlainBool(std::string_view s) {
  return s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE";
}
bool IsPlainInt(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    bool hex = s[1] == 'x';
    return std::all_of(s.begin() + 2, s.end(), [hex](char c) {
      return hex ? std::isxdigit(static_cast<unsigned char>(c)) != 0 : (c >= '0' && c <= '7');
    });
  }
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == s.size()) return false;
  return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(i), s.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}
bool IsPlainFloat(std::string_view s) {
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf" || s == "-.inf" || s == ".nan" ||
      s == ".NaN" || s == ".NAN") {
    return true;
  }
  size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  bool digits = false, dot = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c >= '0' && c <= '9') {
      digits = true;
    } else if (c == '.' && !dot) {
      dot = true;
    } else if ((c == 'e' || c == 'E') && digits) {
      size_t j = i + 1;
      if (j < s.size() && (s[j] == '-' || s[j] == '+')) ++j;
      if (j == s.size()) return false;
      return std::all_of(s.begin() + static_cast<std::ptrdiff_t>(j), s.end(),
                         [](char d) { return d >= '0' && d <= '9'; });
    } else {
      return false;
    }
  }
  return digits;
}

// Lowercased, with '_' and '-' dropped: "memory_mb" and "MemoryMB" both
// become "memorymb", so a near-miss field name can be suggested.
std::string Fold(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '_' || c == '-') continue;
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Suggest(std::string_view unknown, const std::vector<std::string_view>& known) {
  std::string folded = Fold(unknown);
  std::string_view best;
  size_t best_distance = 3;  // suggest only close misses
  for (std::string_view k : known) {
    if (Fold(k) == folded) return std::string(k);
    size_t d = EditDistance(folded, Fold(k));
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return std::string(best);
}

std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  if (s.size() > 80) out += "...";
  return out + "\"";
}

// Where `path` leads: absolute, with every symlink followed, even one whose
// target does not exist (yet): a dangling link inside an image root must not
// become a way out of it once its target appears. Components that do not
// exist are kept as written. Gives up following after 40 links (a loop) and
// keeps the path reached.
fs::path ResolvePath(const std::string& path) {
  std::vector<std::string> pending;  // components still to walk, last first
  for (const fs::path& part : fs::path(path).lexically_normal()) {
    if (part != "/" && !part.empty()) pending.insert(pending.begin(), part.string());
  }
  fs::path resolved = "/";
  int links = 0;
  while (!pending.empty()) {
    std::string part = std::move(pending.back());
    pending.pop_back();
    if (part == ".") continue;
    if (part == "..") {
      resolved = resolved.parent_path();
      continue;
    }
    fs::path next = resolved / part;
    std::error_code ec;
    if (links < 40 && fs::is_symlink(fs::symlink_status(next, ec))) {
      fs::path target = fs::read_symlink(next, ec);
      if (!ec) {
        ++links;
        if (target.is_absolute()) resolved = "/";
        std::vector<std::string> parts;
        for (const fs::path& t : target) {
          if (t != "/" && !t.empty()) parts.push_back(t.string());
        }
        for (auto it = parts.rbegin(); it != parts.rend(); ++it) pending.push_back(*it);
        continue;
      }
    }
    resolved = std::move(next);
  }
  return resolved;
}

// The parsed key/value pairs of one mapping, with their nodes.
struct Entry {
  YAML::Node key;
  YAML::Node value;
};
using Fields = std::map<std::string, Entry, std::less<>>;

// Parses one document into a VmSpec, recording errors as it goes. One
// instance per document.
class DocumentParser {
 public:
  DocumentParser(std::string_view file, std::string_view content, const ParseOptions& options,
                 std::vector<ManifestError>& errors)
      : file_(file), content_(content), options_(options), errors_(errors) {}

  std::optional<ManifestVm> Parse(const YAML::Node& doc) {
    doc_location_ = Location(doc.Mark());
    size_t errors_before = errors_.size();
    if (!doc.IsMap()) {
      Error(doc.Mark(), "-",
            "a manifest document must be a mapping (apiVersion, kind, metadata, "
            "spec), got a " +
                std::string(TypeName(TypeOf(doc))),
            ErrorKind::kWrongType);
      return std::nullopt;
    }
    Fields top = Mapping(doc, "", kTopFields);
    Constant(top, doc, "apiVersion", kApiVersion);
    Constant(top, doc, "kind", kKind);

    api::VmSpec spec;
    spec.driver = options_.default_driver;
    if (const Entry* metadata = Required(top, doc, "metadata")) {
      Metadata(metadata->value, spec);
    }
    if (const Entry* s = Required(top, doc, "spec")) {
      spec_mark_ = s->value.Mark();
      const size_t before_spec = errors_.size();
      Spec(s->value, spec);
      const bool node_name_failed =
          std::any_of(errors_.begin() + static_cast<std::ptrdiff_t>(before_spec), errors_.end(),
                      [](const ManifestError& e) { return e.field == "spec.nodeName"; });
      if (options_.require_node_name && !spec.node_name && !node_name_failed) {
        Error(spec_mark_, "spec.nodeName",
              "required here (--require-node-name): a fleet repository must name the host of "
              "every VM",
              ErrorKind::kMissingField);
      }
    }
    // Defaults that depend on other fields.
    for (size_t i = 0; i < spec.networks.size(); ++i) {
      if (!spec.networks[i].mac) spec.networks[i].mac = DefaultMac(spec.key(), i);
    }
    // Validate even after parse errors, so one run shows every mistake; but
    // skip fields (and their parents and children) that already have an
    // error: a value that failed to parse was left at its default and would
    // only produce a second, misleading error.
    std::vector<std::string> failed;
    for (size_t i = errors_before; i < errors_.size(); ++i) failed.push_back(errors_[i].field);
    auto related = [](std::string_view a, std::string_view b) {
      if (a.size() > b.size()) std::swap(a, b);
      return b.starts_with(a) && (a.size() == b.size() || b[a.size()] == '.' || b[a.size()] == '[');
    };
    for (const api::FieldError& e : api::FindSpecErrors(spec)) {
      if (std::any_of(failed.begin(), failed.end(),
                      [&](const std::string& f) { return related(f, e.field); })) {
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
      Error(mark, e.field, e.reason, kind);
    }
    if (errors_.size() == errors_before && !options_.image_roots.empty()) CheckImageRoots(spec);
    if (errors_.size() == errors_before && !options_.share_roots.empty()) CheckShareRoots(spec);

    std::optional<api::VmKey> key;
    if (api::ValidateName(spec.name).ok() && api::ValidateName(spec.ns).ok()) key = spec.key();
    for (size_t i = errors_before; i < errors_.size(); ++i) {
      errors_[i].key = key;
      if (errors_[i].field != "spec.nodeName") errors_[i].node_name = spec.node_name;
    }
    if (errors_.size() != errors_before) return std::nullopt;
    return ManifestVm{std::move(spec), doc_location_};
  }

 private:
  SourceLocation Location(const YAML::Mark& mark) const {
    if (mark.is_null()) return doc_location_;
    return SourceLocation{std::string(file_), mark.line + 1, mark.column + 1};
  }

  void Error(const YAML::Mark& mark, std::string field, std::string reason, ErrorKind kind) {
    errors_.push_back(
        ManifestError{Location(mark), std::move(field), std::move(reason), kind, std::nullopt});
  }

  // Where a field's value is, for errors found after parsing (validation):
  // the value itself, or the closest enclosing mapping that exists.
  YAML::Mark MarkOf(std::string path) const {
    while (true) {
      if (auto it = marks_.find(path); it != marks_.end()) return it->second;
      size_t cut = path.find_last_of(".[");
      if (cut == std::string::npos) return spec_mark_;
      path.resize(cut);
    }
  }

  static std::string Join(std::string_view parent, std::string_view name) {
    if (parent.empty()) return std::string(name);
    return std::string(parent) + "." + std::string(name);
  }

  ValueType TypeOf(const YAML::Node& node) const {
    switch (node.Type()) {
      case YAML::NodeType::Map:
        return ValueType::kMapping;
      case YAML::NodeType::Sequence:
        return ValueType::kSequence;
      case YAML::NodeType::Scalar:
        break;
      default:
        return ValueType::kNull;
    }
    const std::string& tag = node.Tag();
    const std::string& s = node.Scalar();
    if (tag == "!") return ValueType::kString;  // quoted: always a string
    if (tag.starts_with(kTagPrefix)) {
      // An explicit standard tag: the text must still read as that type.
      std::string_view t = std::string_view(tag).substr(kTagPrefix.size());
      if (t == "str") return ValueType::kString;
      if (t == "int") return IsPlainInt(s) ? ValueType::kInt : ValueType::kMismatched;
      if (t == "bool") return IsPlainBool(s) ? ValueType::kBool : ValueType::kMismatched;
      if (t == "null") return IsPlainNull(s) ? ValueType::kNull : ValueType::kMismatched;
      if (t == "float") {
        return IsPlainFloat(s) || IsPlainInt(s) ? ValueType::kFloat : ValueType::kMismatched;
      }
      return ValueType::kMismatched;
    }
    if (IsPlainNull(s)) return ValueType::kNull;
    if (IsPlainBool(s)) return ValueType::kBool;
    if (IsPlainInt(s)) return ValueType::kInt;
    if (IsPlainFloat(s)) return ValueType::kFloat;
    return ValueType::kString;
  }

  // Rejects tags other than YAML's standard ones (!!str, !!int, ...).
  bool TagOk(const YAML::Node& node, const std::string& path) {
    const std::string& tag = node.Tag();
    if (tag.empty() || tag == "?" || tag == "!" || tag.starts_with(kTagPrefix)) return true;
    Error(node.Mark(), path, "unsupported YAML tag " + Quoted(tag), ErrorKind::kWrongType);
    return false;
  }

  void WrongType(const YAML::Node& node, const std::string& path, std::string_view expected) {
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

  // Reads a mapping's keys: rejects non-string keys, duplicate keys and keys
  // not in `known` (when given). `path` is the mapping's own field path.
  Fields Mapping(const YAML::Node& node, const std::string& path,
                 const std::vector<std::string_view>& known) {
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
      std::string field = Join(path, name);
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
        if (std::string hint = Suggest(name, known); !hint.empty()) {
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

  const Entry* Find(const Fields& fields, std::string_view name) {
    auto it = fields.find(name);
    return it == fields.end() ? nullptr : &it->second;
  }

  // Where a null value is: the value when it is written (`null`, `~`), the key
  // when it is implicit (`kernel:` and nothing), because yaml-cpp places an
  // implicit null at the next token, which may be on another line.
  YAML::Mark NullMark(const Entry& e) const {
    const YAML::Mark mark = e.value.Mark();
    if (mark.pos >= 0 && static_cast<size_t>(mark.pos) < content_.size()) {
      std::string_view at = content_.substr(static_cast<size_t>(mark.pos));
      for (std::string_view literal : {"null", "Null", "NULL", "~"}) {
        if (at.starts_with(literal)) return mark;
      }
    }
    return e.key.Mark();
  }

  // The entry, or an error at the enclosing mapping when it is absent or null.
  const Entry* Required(const Fields& fields, const YAML::Node& parent, std::string_view name,
                        const std::string& parent_path = "") {
    const Entry* e = Find(fields, name);
    std::string field = Join(parent_path, name);
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

  void Constant(const Fields& fields, const YAML::Node& doc, std::string_view name,
                std::string_view expected) {
    const Entry* e = Required(fields, doc, name);
    if (e == nullptr) return;
    std::optional<std::string> value = String(e->value, std::string(name));
    if (value && *value != expected) {
      Error(e->value.Mark(), std::string(name),
            "must be \"" + std::string(expected) + "\", got " + Quoted(*value),
            ErrorKind::kInvalidValue);
    }
  }

  // A string, or nothing (with an error unless the value was null).
  std::optional<std::string> String(const YAML::Node& node, const std::string& path) {
    if (!TagOk(node, path)) return std::nullopt;
    if (TypeOf(node) != ValueType::kString) {
      if (TypeOf(node) != ValueType::kNull) WrongType(node, path, "a string");
      return std::nullopt;
    }
    return node.Scalar();
  }

  // An optional string field: unset when absent or null.
  void OptionalString(const Fields& fields, std::string_view name, const std::string& parent,
                      std::optional<std::string>& out) {
    const Entry* e = Find(fields, name);
    if (e == nullptr || TypeOf(e->value) == ValueType::kNull) return;
    out = String(e->value, Join(parent, name));
  }

  std::optional<bool> Bool(const YAML::Node& node, const std::string& path) {
    if (!TagOk(node, path)) return std::nullopt;
    if (TypeOf(node) != ValueType::kBool) {
      WrongType(node, path, "a boolean (true or false)");
      return std::nullopt;
    }
    const std::string& s = node.Scalar();
    return s == "true" || s == "True" || s == "TRUE";
  }

  // An integer in [min, max]; out-of-range values (including ones that do not
  // fit in 64 bits) are errors, never wrapped.
  std::optional<int64_t> Integer(const YAML::Node& node, const std::string& path, int64_t min,
                                 int64_t max) {
    if (!TagOk(node, path)) return std::nullopt;
    if (TypeOf(node) != ValueType::kInt) {
      WrongType(node, path, "an integer");
      return std::nullopt;
    }
    std::string_view s = node.Scalar();
    bool negative = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
      negative = s[0] == '-';
      s.remove_prefix(1);
    }
    int base = 10;
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
      base = s[1] == 'x' ? 16 : 8;
      s.remove_prefix(2);
    }
    uint64_t magnitude = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), magnitude, base);
    bool fits = ec == std::errc() && end == s.data() + s.size();
    int64_t value = 0;
    if (fits) {
      if (negative) {
        fits = magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1;
        value = fits ? static_cast<int64_t>(0 - magnitude) : 0;
      } else {
        fits = magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
        value = static_cast<int64_t>(magnitude);
      }
    }
    if (fits && value < 0 && min == 0) {
      Error(node.Mark(), path, "must not be negative, got " + node.Scalar(),
            ErrorKind::kInvalidValue);
      return std::nullopt;
    }
    if (!fits || value < min || value > max) {
      Error(node.Mark(), path,
            "integer " + node.Scalar() + " is out of range (" + std::to_string(min) + ".." +
                std::to_string(max) + ")",
            ErrorKind::kInvalidValue);
      return std::nullopt;
    }
    return value;
  }

  template <typename E>
  void Enum(const Fields& fields, std::string_view name, const std::string& parent,
            std::optional<E> (*parse)(std::string_view), std::string_view allowed, E& out) {
    const Entry* e = Find(fields, name);
    if (e == nullptr || TypeOf(e->value) == ValueType::kNull) return;
    std::string path = Join(parent, name);
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

  void Metadata(const YAML::Node& node, api::VmSpec& spec) {
    if (!node.IsMap()) {
      WrongType(node, "metadata", "a mapping");
      return;
    }
    Fields fields = Mapping(node, "metadata", kMetadataFields);
    if (const Entry* name = Required(fields, node, "name", "metadata")) {
      if (auto v = String(name->value, "metadata.name")) spec.name = *v;
    }
    std::optional<std::string> ns;
    OptionalString(fields, "namespace", "metadata", ns);
    if (ns) spec.ns = *ns;
    if (const Entry* labels = Find(fields, "labels")) {
      if (TypeOf(labels->value) == ValueType::kNull) return;
      if (!labels->value.IsMap()) {
        WrongType(labels->value, "metadata.labels", "a mapping of strings");
        return;
      }
      Fields entries = Mapping(labels->value, "metadata.labels", {});
      for (const auto& [key, entry] : entries) {
        std::string path = "metadata.labels." + key;
        label_key_marks_[path] = entry.key.Mark();
        if (TypeOf(entry.value) == ValueType::kNull) {
          spec.labels[key] = "";
        } else if (auto v = String(entry.value, path)) {
          spec.labels[key] = *v;
        }
      }
    }
  }

  void Spec(const YAML::Node& node, api::VmSpec& spec) {
    if (!node.IsMap()) {
      WrongType(node, "spec", "a mapping");
      return;
    }
    Fields f = Mapping(node, "spec", kSpecFields);

    Enum(f, "desiredState", "spec", &api::ParseDesiredState, "Running, Paused, Stopped",
         spec.desired_state);
    Enum(f, "restartPolicy", "spec", &api::ParseRestartPolicy, "Always, OnFailure, Never",
         spec.restart_policy);
    std::optional<std::string> driver;
    OptionalString(f, "driver", "spec", driver);
    if (driver) spec.driver = *driver;
    OptionalString(f, "nodeName", "spec", spec.node_name);
    if (const Entry* kernel = Required(f, node, "kernel", "spec")) {
      if (auto v = String(kernel->value, "spec.kernel")) spec.kernel = *v;
    }
    OptionalString(f, "initramfs", "spec", spec.initramfs);
    OptionalString(f, "cmdline", "spec", spec.cmdline);
    OptionalString(f, "rootDisk", "spec", spec.root_disk);
    OptionalString(f, "dataDisk", "spec", spec.data_disk);
    OptionalString(f, "seedIso", "spec", spec.seed_iso);
    OptionalString(f, "netns", "spec", spec.netns);
    OptionalString(f, "machineId", "spec", spec.machine_id);
    OptionalString(f, "efiVariableStore", "spec", spec.efi_variable_store);

    if (const Entry* e = NonNull(f, "cpus")) {
      if (auto v = Integer(e->value, "spec.cpus", 0, std::numeric_limits<uint32_t>::max())) {
        spec.cpus = static_cast<uint32_t>(*v);
      }
    }
    if (const Entry* e = NonNull(f, "memoryMb")) {
      if (auto v = Integer(e->value, "spec.memoryMb", 0, std::numeric_limits<int64_t>::max())) {
        spec.memory_mb = static_cast<uint64_t>(*v);
      }
    }
    if (const Entry* e = NonNull(f, "vsock")) {
      if (auto v = Bool(e->value, "spec.vsock")) spec.vsock = *v;
    }
    if (const Entry* e = NonNull(f, "rosetta")) {
      if (auto v = Bool(e->value, "spec.rosetta")) spec.rosetta = *v;
    }
    if (const Entry* e = NonNull(f, "stopGracePeriodSeconds")) {
      if (auto v = Seconds(e->value, "spec.stopGracePeriodSeconds")) spec.stop_grace_period = *v;
    }
    if (const Entry* e = NonNull(f, "readiness")) Readiness(e->value, spec);
    if (const Entry* e = NonNull(f, "networks")) Networks(e->value, spec);
    if (const Entry* e = NonNull(f, "sharedDirs")) SharedDirs(e->value, spec);
  }

  const Entry* NonNull(const Fields& fields, std::string_view name) {
    const Entry* e = Find(fields, name);
    if (e == nullptr || TypeOf(e->value) == ValueType::kNull) return nullptr;
    return e;
  }

  // Seconds, allowed negative here so that the rule "must not be negative"
  // is stated once, in api::FindSpecErrors.
  std::optional<std::chrono::seconds> Seconds(const YAML::Node& node, const std::string& path) {
    // Bounded so that adding it to a time point can never overflow.
    constexpr int64_t kLimit = int64_t{1} << 40;
    auto v = Integer(node, path, -kLimit, kLimit);
    if (!v) return std::nullopt;
    return std::chrono::seconds(*v);
  }

  void Readiness(const YAML::Node& node, api::VmSpec& spec) {
    if (!node.IsMap()) {
      WrongType(node, "spec.readiness", "a mapping");
      return;
    }
    Fields f = Mapping(node, "spec.readiness", kReadinessFields);
    if (const Entry* e = NonNull(f, "timeoutSeconds")) {
      if (auto v = Seconds(e->value, "spec.readiness.timeoutSeconds")) {
        spec.readiness_timeout = *v;
      }
    }
  }

  void Networks(const YAML::Node& node, api::VmSpec& spec) {
    if (!node.IsSequence()) {
      WrongType(node, "spec.networks", "a list");
      return;
    }
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      std::string path = "spec.networks[" + std::to_string(i) + "]";
      marks_[path] = item.Mark();
      api::NetworkAttachment net;
      if (!item.IsMap()) {
        WrongType(item, path, "a mapping with tap and mac");
        spec.networks.push_back(std::move(net));
        continue;
      }
      Fields f = Mapping(item, path, kNetworkFields);
      if (const Entry* tap = Required(f, item, "tap", path)) {
        if (auto v = String(tap->value, path + ".tap")) net.tap = *v;
      }
      OptionalString(f, "mac", path, net.mac);
      spec.networks.push_back(std::move(net));
    }
  }

  void SharedDirs(const YAML::Node& node, api::VmSpec& spec) {
    if (!node.IsSequence()) {
      WrongType(node, "spec.sharedDirs", "a list");
      return;
    }
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      std::string path = "spec.sharedDirs[" + std::to_string(i) + "]";
      marks_[path] = item.Mark();
      api::SharedDir dir;
      if (!item.IsMap()) {
        WrongType(item, path, "a mapping with hostPath, tag and readOnly");
        spec.shared_dirs.push_back(std::move(dir));
        continue;
      }
      Fields f = Mapping(item, path, kSharedDirFields);
      if (const Entry* e = Required(f, item, "hostPath", path)) {
        if (auto v = String(e->value, path + ".hostPath")) dir.host_path = *v;
      }
      if (const Entry* e = Required(f, item, "tag", path)) {
        if (auto v = String(e->value, path + ".tag")) dir.tag = *v;
      }
      if (const Entry* e = NonNull(f, "readOnly")) {
        if (auto v = Bool(e->value, path + ".readOnly")) dir.read_only = *v;
      }
      spec.shared_dirs.push_back(std::move(dir));
    }
  }

  // Returns a check of one path field against `roots` (the --FLAG values):
  // an error of `kind` at the field when the path, symlinks followed, is
  // not inside any of them.
  auto RootCheck(const std::vector<std::string>& root_paths, const char* flag, ErrorKind kind) {
    std::vector<fs::path> roots;
    std::string root_list;
    for (const std::string& root : root_paths) {
      roots.push_back(ResolvePath(root));
      root_list += (root_list.empty() ? "" : ", ") + root;
    }
    return [this, roots = std::move(roots), root_list = std::move(root_list), flag, kind](
               const std::string& field, const std::optional<std::string>& path) {
      if (!path) return;
      fs::path resolved = ResolvePath(*path);
      for (const fs::path& root : roots) {
        auto [root_end, unused] =
            std::mismatch(root.begin(), root.end(), resolved.begin(), resolved.end());
        if (root_end == root.end()) return;
      }
      std::string reason = "resolves to " + Quoted(resolved.string()) + ", outside every --" +
                           flag + " (" + root_list + ")";
      Error(MarkOf(field), field, std::move(reason), kind);
    };
  }

  void CheckShareRoots(const api::VmSpec& spec) {
    auto check = RootCheck(options_.share_roots, "share-root", ErrorKind::kOutsideShareRoot);
    for (size_t i = 0; i < spec.shared_dirs.size(); ++i) {
      check("spec.sharedDirs[" + std::to_string(i) + "].hostPath", spec.shared_dirs[i].host_path);
    }
  }

  void CheckImageRoots(const api::VmSpec& spec) {
    auto check = RootCheck(options_.image_roots, "image-root", ErrorKind::kOutsideImageRoot);
    check("spec.kernel", spec.kernel);
    check("spec.initramfs", spec.initramfs);
    check("spec.rootDisk", spec.root_disk);
    check("spec.dataDisk", spec.data_disk);
    check("spec.seedIso", spec.seed_iso);
    check("spec.efiVariableStore", spec.efi_variable_store);
  }

  std::string_view file_;
  std::string_view content_;
  const ParseOptions& options_;
  std::vector<ManifestError>& errors_;
  SourceLocation doc_location_;
  YAML::Mark spec_mark_;
  std::map<std::string, YAML::Mark> marks_;            // field path -> its value's position
  std::map<std::string, YAML::Mark> label_key_marks_;  // "metadata.labels.<k>" -> the key
};

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// JSON is parsed by yaml-cpp (for positions), but must first be JSON: this
// catches what YAML would forgive (comments, unquoted strings, trailing text).
std::optional<ManifestError> CheckJsonSyntax(std::string_view file, std::string_view content) {
  struct ErrorCatcher : nlohmann::json_sax<nlohmann::json> {
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return ++depth < 64; }
    bool key(string_t&) override { return true; }
    bool end_object() override { return --depth, true; }
    bool start_array(std::size_t) override { return ++depth < 64; }
    bool end_array() override { return --depth, true; }
    bool parse_error(std::size_t position, const std::string&,
                     const nlohmann::detail::exception& ex) override {
      byte = position;
      message = ex.what();
      return false;
    }
    int depth = 0;
    size_t byte = 0;
    std::string message;
  } catcher;
  bool ok = nlohmann::json::sax_parse(content, &catcher);
  if (ok) return std::nullopt;
  if (catcher.message.empty()) catcher.message = "JSON nested too deeply";
  // nlohmann reports the offset just past the bad token; point at it.
  size_t offset = catcher.byte > 0 ? std::min(catcher.byte - 1, content.size()) : 0;
  int line = 1, column = 1;
  for (size_t i = 0; i < offset; ++i) {
    if (content[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  std::string reason = catcher.message;
  if (auto cut = reason.find("syntax error"); cut != std::string::npos) reason = reason.substr(cut);
  return ManifestError{SourceLocation{std::string(file), line, column}, "-",
                       "invalid JSON: " + reason, ErrorKind::kSyntax, std::nullopt};
}

// YAML allows only printable characters (tab, LF, CR, and printable UTF-8);
// anything else (a NUL, a stray control byte, broken UTF-8) is refused with
// its position rather than handed to yaml-cpp, which misreads some of it.
std::optional<ManifestError> CheckCharacters(std::string_view file, std::string_view content) {
  int line = 1, column = 1;
  size_t i = 0;
  while (i < content.size()) {
    const auto c = static_cast<unsigned char>(content[i]);
    size_t length = 1;
    uint32_t code = c;
    if (c >= 0x80) {
      length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
      bool ok = length != 0 && c < 0xF5 && i + length <= content.size();
      if (ok) {
        code = c & (0xFF >> (length + 1));
        for (size_t k = 1; k < length && ok; ++k) {
          const auto next = static_cast<unsigned char>(content[i + k]);
          ok = (next & 0xC0) == 0x80;
          code = (code << 6) | (next & 0x3F);
        }
        static constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
        ok = ok && code >= kMinimum[length] && code <= 0x10FFFF &&
             !(code >= 0xD800 && code <= 0xDFFF);
      }
      if (!ok) {
        return ManifestError{SourceLocation{std::string(file), line, column}, "-",
                             "invalid UTF-8 byte sequence", ErrorKind::kSyntax, std::nullopt};
      }
    }
    const bool printable = code == '\t' || code == '\n' || code == '\r' ||
                           (code >= 0x20 && code != 0x7F && !(code >= 0x80 && code <= 0x9F) &&
                            code != 0xFFFE && code != 0xFFFF);
    if (!printable) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "%02X", code);
      std::string name = code == 0 ? "NUL" : "U+00" + std::string(hex);
      return ManifestError{SourceLocation{std::string(file), line, column}, "-",
                           "character " + name + " is not allowed in YAML or JSON text",
                           ErrorKind::kSyntax, std::nullopt};
    }
    if (code == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += length;
  }
  return std::nullopt;
}

// yaml-cpp 0.7's LoadAll never returns on some malformed input (a top-level
// quoted scalar followed by ',': `"a",`): its parser keeps producing empty
// documents at the same position. This pass walks the event stream first
// and turns that into a syntax error at the stuck position.
//
// It also catches what yaml-cpp 0.7 forgives: a quoted scalar that is never
// closed (it runs to the end of the file, so a file cut off mid-write would
// read as complete).
std::optional<ManifestError> CheckYamlMakesProgress(std::string_view file,
                                                    const std::string& content) {
  struct DocumentStarts : YAML::EventHandler {
    explicit DocumentStarts(const std::string& text) : content(text) {}
    void OnDocumentStart(const YAML::Mark& mark) override { last = mark; }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
    void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  const std::string&) override {
      if (unterminated.has_value() || mark.pos < 0) return;
      size_t i = static_cast<size_t>(mark.pos);
      if (i >= content.size() || (content[i] != '"' && content[i] != '\'')) return;
      const char quote = content[i];
      for (++i; i < content.size(); ++i) {
        if (quote == '"' && content[i] == '\\') {
          ++i;
        } else if (content[i] == quote) {
          if (quote == '\'' && i + 1 < content.size() && content[i + 1] == '\'') {
            ++i;  // '' is an escaped quote
          } else {
            return;
          }
        }
      }
      unterminated = mark;
    }
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {}
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {}
    void OnMapEnd() override {}
    const std::string& content;
    YAML::Mark last = YAML::Mark::null_mark();
    std::optional<YAML::Mark> unterminated;
  } starts(content);
  try {
    std::istringstream in(content);
    YAML::Parser parser(in);
    int previous_pos = -1;
    while (parser.HandleNextDocument(starts)) {
      if (starts.last.pos == previous_pos) {
        return ManifestError{
            SourceLocation{std::string(file), starts.last.line + 1, starts.last.column + 1}, "-",
            "invalid YAML: unexpected text where a document or a key was expected",
            ErrorKind::kSyntax, std::nullopt};
      }
      previous_pos = starts.last.pos;
    }
    if (starts.unterminated) {
      const YAML::Mark& at = *starts.unterminated;
      return ManifestError{SourceLocation{std::string(file), at.line + 1, at.column + 1}, "-",
                           "invalid YAML: quoted string is never closed (missing end quote)",
                           ErrorKind::kSyntax, std::nullopt};
    }
  } catch (const std::exception&) {
    // LoadAll meets the same error and reports it.
  }
  return std::nullopt;
}

// The column of a tab in the leading whitespace of 1-based `line`, if any.
std::optional<int> TabIndentation(std::string_view text, int line) {
  size_t start = 0;
  for (int l = 1; l < line; ++l) {
    start = text.find('\n', start);
    if (start == std::string_view::npos) return std::nullopt;
    ++start;
  }
  for (size_t i = start; i < text.size() && (text[i] == ' ' || text[i] == '\t'); ++i) {
    if (text[i] == '\t') return static_cast<int>(i - start) + 1;
  }
  return std::nullopt;
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
  auto file_error = [&](int line, int column, std::string reason, ErrorKind kind) {
    result.errors.push_back(ManifestError{SourceLocation{std::string(file), line, column}, "-",
                                          std::move(reason), kind, std::nullopt});
  };
  if (content.size() > kMaxManifestBytes) {
    file_error(0, 0, "file is larger than " + std::to_string(kMaxManifestBytes) + " bytes",
               ErrorKind::kIo);
    return result;
  }
  const bool json = EndsWith(file, ".json");
  if (json) {
    if (auto error = CheckJsonSyntax(file, content)) {
      result.errors.push_back(std::move(*error));
      return result;
    }
  }

  if (auto error = CheckCharacters(file, content)) {
    result.errors.push_back(std::move(*error));
    return result;
  }
  const std::string text(content);
  if (auto error = CheckYamlMakesProgress(file, text)) {
    result.errors.push_back(std::move(*error));
    return result;
  }
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    file_error(e.mark.is_null() ? 1 : e.mark.line + 1, e.mark.is_null() ? 1 : e.mark.column + 1,
               "invalid YAML: nested too deeply", ErrorKind::kSyntax);
    return result;
  } catch (const YAML::Exception& e) {
    int line = e.mark.is_null() ? 1 : e.mark.line + 1;
    int column = e.mark.is_null() ? 1 : e.mark.column + 1;
    std::string reason = "invalid " + std::string(json ? "JSON" : "YAML") + ": " + e.msg;
    // yaml-cpp blames the ':' after a tab-indented key; name the real cause.
    if (auto tab = TabIndentation(text, line)) {
      column = *tab;
      reason = "invalid YAML: tabs are not allowed for indentation (use spaces)";
    }
    file_error(line, column, std::move(reason), ErrorKind::kSyntax);
    return result;
  } catch (const std::exception& e) {
    file_error(1, 1, std::string("cannot parse: ") + e.what(), ErrorKind::kSyntax);
    return result;
  }

  size_t parsed = 0;
  for (const YAML::Node& doc : documents) {
    // Empty documents (a trailing "---", a file of comments) hold nothing.
    if (!doc.IsDefined() || doc.IsNull()) continue;
    ++parsed;
    try {
      DocumentParser parser(file, text, options, result.errors);
      if (auto vm = parser.Parse(doc)) result.vms.push_back(std::move(*vm));
    } catch (const std::exception& e) {
      // yaml-cpp may throw on malformed node graphs; a bad document must never
      // take vmlet down.
      file_error(doc.Mark().line + 1, doc.Mark().column + 1,
                 std::string("cannot read document: ") + e.what(), ErrorKind::kSyntax);
    }
  }
  // Errors in reading order, whichever check found them.
  std::stable_sort(result.errors.begin(), result.errors.end(),
                   [](const ManifestError& a, const ManifestError& b) {
                     return std::pair(a.location.line, a.location.column) <
                            std::pair(b.location.line, b.location.column);
                   });
  if (parsed == 0) {
    file_error(1, 1, "no VirtualMachine document in file (delete the file to delete its VMs)",
               ErrorKind::kNoDocuments);
  }
  return result;
}

const std::vector<std::string>& ManifestFieldPaths() {
  static const std::vector<std::string> paths = [] {
    std::vector<std::string> out;
    auto add = [&out](std::string_view prefix, const std::vector<std::string_view>& fields) {
      for (std::string_view f : fields) out.push_back(std::string(prefix) + std::string(f));
    };
    add("", kTopFields);
    add("metadata.", kMetadataFields);
    add("spec.", kSpecFields);
    add("spec.readiness.", kReadinessFields);
    add("spec.networks[].", kNetworkFields);
    add("spec.sharedDirs[].", kSharedDirFields);
    return out;
  }();
  return paths;
}

}  // namespace vmlet::manifests
