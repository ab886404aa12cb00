#include "tests/fakes/fake_cloud_hypervisor/openapi_validator.h"

#include <cctype>
#include <cstdint>
#include <limits>
#include <map>
#include <utility>

namespace vmlet::testing::fake_ch {
namespace {

using nlohmann::json;

constexpr std::string_view kSchemaRefPrefix = "#/components/schemas/";
// Deeper than any real schema; stops a $ref cycle from recursing forever.
constexpr int kMaxDepth = 64;

struct Range {
  long double min;
  long double max;
};

// `format` values that bound an integer. long double holds every int64 and
// uint64 exactly on the platforms we build for (x86-64: 64-bit mantissa).
const std::map<std::string, Range>& IntegerFormats() {
  static const std::map<std::string, Range> formats{
      {"int8", {-128.0L, 127.0L}},
      {"int16", {-32768.0L, 32767.0L}},
      {"int32", {-2147483648.0L, 2147483647.0L}},
      {"int64",
       {static_cast<long double>(std::numeric_limits<int64_t>::min()),
        static_cast<long double>(std::numeric_limits<int64_t>::max())}},
      {"uint8", {0.0L, 255.0L}},
      {"uint16", {0.0L, 65535.0L}},
      {"uint32", {0.0L, 4294967295.0L}},
      {"uint64", {0.0L, static_cast<long double>(std::numeric_limits<uint64_t>::max())}},
  };
  return formats;
}

// The member `key` of `node`, or an undefined node when `node` is not a map
// or lacks it. (yaml-cpp throws InvalidNode when a missing member is indexed
// further, so every lookup goes through here.)
YAML::Node Get(const YAML::Node& node, const std::string& key) {
  if (!node.IsDefined() || !node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node child = node[key];
  if (!child.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
  return child;
}

// The scalar member `key` of `node`; "" when absent or not a scalar.
std::string ScalarOf(const YAML::Node& node, const std::string& key) {
  const YAML::Node child = Get(node, key);
  return child.IsScalar() ? child.Scalar() : "";
}

bool BoolOf(const YAML::Node& node, const std::string& key, bool fallback) {
  const YAML::Node child = Get(node, key);
  return child.IsScalar() ? child.as<bool>(fallback) : fallback;
}

std::string JsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    default:
      return "value";
  }
}

// True when `value` is of OpenAPI type `type`; unknown type names constrain nothing.
bool HasType(const std::string& type, const json& value) {
  if (type == "object") return value.is_object();
  if (type == "array") return value.is_array();
  if (type == "string") return value.is_string();
  if (type == "integer") return value.is_number_integer();
  if (type == "number") return value.is_number();
  if (type == "boolean") return value.is_boolean();
  return true;
}

long double NumberOf(const json& value) {
  if (value.is_number_unsigned()) return static_cast<long double>(value.get<uint64_t>());
  if (value.is_number_integer()) return static_cast<long double>(value.get<int64_t>());
  return static_cast<long double>(value.get<double>());
}

std::optional<long double> ScalarNumber(const YAML::Node& node) {
  if (!node.IsScalar()) return std::nullopt;
  try {
    size_t used = 0;
    const std::string text = node.Scalar();
    const long double number = std::stold(text, &used);
    if (used != text.size()) return std::nullopt;
    return number;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string NumberText(long double number) {
  if (number == static_cast<long double>(static_cast<int64_t>(number))) {
    return std::to_string(static_cast<int64_t>(number));
  }
  return std::to_string(static_cast<double>(number));
}

bool IsIdentifier(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') return false;
  }
  return true;
}

std::string MemberPath(const std::string& where, const std::string& name) {
  if (IsIdentifier(name)) return where + "." + name;
  return where + "[" + json(name).dump() + "]";
}

size_t Utf8Length(const std::string& s) {
  size_t count = 0;
  for (unsigned char c : s) count += (c & 0xC0) != 0x80;
  return count;
}

}  // namespace

std::unique_ptr<OpenApiValidator> OpenApiValidator::Load(const std::string& path,
                                                         std::string& error) {
  YAML::Node spec;
  try {
    spec = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    error = "cannot load OpenAPI spec " + path + ": " + e.what();
    return nullptr;
  }
  if (!Get(spec, "paths").IsMap() || !Get(Get(spec, "components"), "schemas").IsMap()) {
    error = "OpenAPI spec " + path + " has no `paths` or no `components.schemas`";
    return nullptr;
  }
  return std::unique_ptr<OpenApiValidator>(new OpenApiValidator(std::move(spec)));
}

bool OpenApiValidator::HasPath(const std::string& path) const {
  return Get(Get(spec_, "paths"), path).IsMap();
}

YAML::Node OpenApiValidator::BodySchema(const std::string& path, const std::string& method) const {
  const YAML::Node operation = Get(Get(Get(spec_, "paths"), path), method);
  return Get(Get(Get(Get(operation, "requestBody"), "content"), "application/json"), "schema");
}

OpenApiValidator::RequestBody OpenApiValidator::RequestBodyOf(const std::string& path,
                                                              const std::string& method) const {
  const YAML::Node body = Get(Get(Get(Get(spec_, "paths"), path), method), "requestBody");
  RequestBody result;
  if (!body.IsMap()) return result;
  result.declared = true;
  result.required = BoolOf(body, "required", false);
  const YAML::Node schema = BodySchema(path, method);
  const std::string ref = ScalarOf(schema, "$ref");
  if (ref.rfind(kSchemaRefPrefix, 0) == 0) result.schema_name = ref.substr(kSchemaRefPrefix.size());
  return result;
}

OpenApiValidator::Result OpenApiValidator::Validate(const std::string& schema_name,
                                                    const nlohmann::json& value) const {
  Result result;
  std::optional<YAML::Node> schema = Resolve(std::string(kSchemaRefPrefix) + schema_name);
  if (!schema) {
    result.violations.push_back("$: the spec has no schema " + schema_name);
    return result;
  }
  Check(*schema, value, "$", 0, result);
  return result;
}

OpenApiValidator::Result OpenApiValidator::ValidateRequestBody(const std::string& path,
                                                               const std::string& method,
                                                               const nlohmann::json& value) const {
  Result result;
  Check(BodySchema(path, method), value, "$", 0, result);
  return result;
}

std::optional<YAML::Node> OpenApiValidator::Resolve(const std::string& ref) const {
  if (ref.rfind(kSchemaRefPrefix, 0) != 0) return std::nullopt;
  const YAML::Node schemas = Get(Get(spec_, "components"), "schemas");
  const YAML::Node schema = Get(schemas, ref.substr(kSchemaRefPrefix.size()));
  if (!schema.IsDefined() || schema.IsNull()) return std::nullopt;
  return schema;
}

void OpenApiValidator::Check(const YAML::Node& schema, const nlohmann::json& value,
                             const std::string& where, int depth, Result& result) const {
  if (depth > kMaxDepth) {
    result.violations.push_back(where + ": schema nesting deeper than " +
                                std::to_string(kMaxDepth) + " (a $ref cycle?)");
    return;
  }
  if (!schema.IsMap()) return;  // no schema, or `true`: anything goes

  // OpenAPI 3.0: a $ref replaces its schema object; siblings are ignored.
  if (const std::string ref = ScalarOf(schema, "$ref"); !ref.empty()) {
    std::optional<YAML::Node> target = Resolve(ref);
    if (!target) {
      result.violations.push_back(where + ": unresolvable $ref " + ref);
      return;
    }
    Check(*target, value, where, depth + 1, result);
    return;
  }

  const std::string type = ScalarOf(schema, "type");
  if (value.is_null()) {
    const bool nullable = BoolOf(schema, "nullable", false);
    if (!nullable && !type.empty()) {
      result.violations.push_back(where + ": expected " + type + ", got null");
    }
    return;
  }
  if (!type.empty() && !HasType(type, value)) {
    result.violations.push_back(where + ": expected " + type + ", got " + JsonTypeName(value));
    return;
  }

  if (Get(schema, "enum").IsSequence()) {
    bool found = false;
    std::string allowed;
    for (const YAML::Node& option : Get(schema, "enum")) {
      if (!option.IsScalar()) continue;
      allowed += (allowed.empty() ? "" : ", ") + option.Scalar();
      if (value.is_string() ? value.get<std::string>() == option.Scalar()
                            : value.dump() == option.Scalar()) {
        found = true;
      }
    }
    if (!found) {
      result.violations.push_back(where + ": must be one of [" + allowed + "], got " +
                                  value.dump());
    }
  }

  if (value.is_number()) {
    const long double number = NumberOf(value);
    const std::string format = ScalarOf(schema, "format");
    const auto range = IntegerFormats().find(format);
    if (value.is_number_integer() && range != IntegerFormats().end() &&
        (number < range->second.min || number > range->second.max)) {
      result.violations.push_back(where + ": out of range for " + format + " (" +
                                  NumberText(range->second.min) + ".." +
                                  NumberText(range->second.max) + "), got " + value.dump());
    }
    if (std::optional<long double> minimum = ScalarNumber(Get(schema, "minimum"));
        minimum && number < *minimum) {
      result.violations.push_back(where + ": must be >= " + NumberText(*minimum) + ", got " +
                                  value.dump());
    }
    if (std::optional<long double> maximum = ScalarNumber(Get(schema, "maximum"));
        maximum && number > *maximum) {
      result.violations.push_back(where + ": must be <= " + NumberText(*maximum) + ", got " +
                                  value.dump());
    }
  }

  if (value.is_string()) {
    const size_t length = Utf8Length(value.get<std::string>());
    if (std::optional<long double> min_length = ScalarNumber(Get(schema, "minLength"));
        min_length && length < *min_length) {
      result.violations.push_back(where + ": must be at least " + NumberText(*min_length) +
                                  " characters long, got " + std::to_string(length));
    }
    if (std::optional<long double> max_length = ScalarNumber(Get(schema, "maxLength"));
        max_length && length > *max_length) {
      result.violations.push_back(where + ": must be at most " + NumberText(*max_length) +
                                  " characters long, got " + std::to_string(length));
    }
  }

  if (value.is_object()) {
    if (Get(schema, "required").IsSequence()) {
      for (const YAML::Node& name : Get(schema, "required")) {
        if (name.IsScalar() && !value.contains(name.Scalar())) {
          result.violations.push_back(MemberPath(where, name.Scalar()) + ": required");
        }
      }
    }
    const YAML::Node properties = Get(schema, "properties");
    const YAML::Node additional = Get(schema, "additionalProperties");
    for (const auto& [name, member] : value.items()) {
      const std::string member_path = MemberPath(where, name);
      if (const YAML::Node declared = Get(properties, name); declared.IsDefined()) {
        Check(declared, member, member_path, depth + 1, result);
      } else if (additional.IsMap()) {
        Check(additional, member, member_path, depth + 1, result);
      } else if (!BoolOf(schema, "additionalProperties", true)) {
        result.violations.push_back(member_path + ": not allowed (additionalProperties: false)");
      } else if (properties.IsMap()) {
        result.warnings.push_back(member_path + ": not in the spec; Cloud Hypervisor ignores it");
      }
    }
  }

  if (const YAML::Node items = Get(schema, "items"); value.is_array() && items.IsDefined()) {
    for (size_t i = 0; i < value.size(); ++i) {
      Check(items, value[i], where + "[" + std::to_string(i) + "]", depth + 1, result);
    }
  }
}

}  // namespace vmlet::testing::fake_ch
