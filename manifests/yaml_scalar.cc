#include "manifests/yaml_scalar.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>

namespace vmlet::manifests::internal {

std::string_view TypeName(ValueType type) {
  switch (type) {
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

bool IsPlainNull(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

bool IsPlainBool(std::string_view s) {
  return s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE";
}

bool IsPlainTrue(std::string_view s) { return s == "true" || s == "True" || s == "TRUE"; }

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

std::optional<int64_t> PlainIntValue(std::string_view s) {
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
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (negative) {
    if (magnitude > kMax + 1) return std::nullopt;
    return static_cast<int64_t>(0 - magnitude);
  }
  if (magnitude > kMax) return std::nullopt;
  return static_cast<int64_t>(magnitude);
}

namespace {

// The type of a scalar with an explicit standard tag (`t` is the tag without
// kTagPrefix): the tagged type when the text reads as it, else kMismatched.
ValueType TaggedScalarType(std::string_view t, std::string_view s) {
  if (t == "str") return ValueType::kString;
  if (t == "int") return IsPlainInt(s) ? ValueType::kInt : ValueType::kMismatched;
  if (t == "bool") return IsPlainBool(s) ? ValueType::kBool : ValueType::kMismatched;
  if (t == "null") return IsPlainNull(s) ? ValueType::kNull : ValueType::kMismatched;
  if (t == "float") {
    return IsPlainFloat(s) || IsPlainInt(s) ? ValueType::kFloat : ValueType::kMismatched;
  }
  return ValueType::kMismatched;
}

}  // namespace

ValueType TypeOf(const YAML::Node& node) {
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
    return TaggedScalarType(std::string_view(tag).substr(kTagPrefix.size()), s);
  }
  if (IsPlainNull(s)) return ValueType::kNull;
  if (IsPlainBool(s)) return ValueType::kBool;
  if (IsPlainInt(s)) return ValueType::kInt;
  if (IsPlainFloat(s)) return ValueType::kFloat;
  return ValueType::kString;
}

}  // namespace vmlet::manifests::internal
