#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <optional>
#include <string_view>

namespace vmlet::manifests::internal {

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

// How an error message names the type: "integer", "list", ...
std::string_view TypeName(ValueType type);

// The prefix of YAML's standard tags (!!str is "tag:yaml.org,2002:str").
inline constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

// Whether plain (unquoted, untagged) text reads as that type under the core
// schema: `~`, `null`, `Null`, `NULL` and the empty text are null; `true`,
// `True`, `TRUE` and the same of `false` are booleans; decimal with an
// optional sign, 0x hex and 0o octal are integers; decimals with a '.' or an
// exponent and .inf/.nan spellings are floats.
bool IsPlainNull(std::string_view text);
bool IsPlainBool(std::string_view text);
bool IsPlainInt(std::string_view text);
bool IsPlainFloat(std::string_view text);

// True for the plain spellings of true (`true`, `True`, `TRUE`).
// REQUIRES: IsPlainBool(text).
bool IsPlainTrue(std::string_view text);

// The value of text IsPlainInt() accepts, or nothing when it does not fit in
// 64 bits (it is never wrapped).
std::optional<int64_t> PlainIntValue(std::string_view text);

// The type `node` has: mappings and sequences by their shape, scalars by
// their tag ("!" is quoted, so a string; a standard tag the text must fit)
// or, untagged, by their plain text. Anything else (undefined, null) is null.
ValueType TypeOf(const YAML::Node& node);

}  // namespace vmlet::manifests::internal
