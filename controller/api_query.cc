#include "controller/api_query.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <utility>

namespace vmlet::controller {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string DecodeQueryPart(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() && HexValue(text[i + 1]) >= 0 &&
               HexValue(text[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

bool IsLabelKeyChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
         c == '/';
}
bool IsLabelValueChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

api::Status BadRequirement(std::string_view requirement, std::string_view why) {
  return api::Status::InvalidArgument("unable to parse requirement: \"" + std::string(requirement) +
                                      "\": " + std::string(why));
}

}  // namespace

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitTopLevel(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    if (text[i] == ')') --depth;
    if (text[i] == sep && depth == 0) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  parts.push_back(text.substr(start));
  return parts;
}

std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::map<std::string, std::string> ParseQuery(std::string_view query) {
  std::map<std::string, std::string> params;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view pair = query.substr(start, end - start);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      std::string key = DecodeQueryPart(pair.substr(0, eq));
      std::string value = eq == std::string_view::npos ? "" : DecodeQueryPart(pair.substr(eq + 1));
      params.emplace(std::move(key), std::move(value));
    }
    start = end + 1;
  }
  return params;
}

std::string EncodeQueryValue(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

api::StatusOr<LabelSelector> LabelSelector::Parse(std::string_view text) {
  LabelSelector selector;
  if (Trim(text).empty()) return selector;
  for (std::string_view raw : SplitTopLevel(text, ',')) {
    api::StatusOr<Requirement> r = ParseRequirement(raw);
    if (!r.ok()) return r.status();
    selector.requirements_.push_back(std::move(r).value());
  }
  return selector;
}

api::StatusOr<LabelSelector::Requirement> LabelSelector::ParseRequirement(std::string_view raw) {
  const std::string_view req = Trim(raw);
  if (req.empty()) return BadRequirement(raw, "found '', expected: identifier");
  Requirement r;
  std::string_view rest = req;
  if (rest.front() == '!') {
    rest = Trim(rest.substr(1));
    r.op = Op::kNotExists;
  }
  size_t key_end = 0;
  while (key_end < rest.size() && IsLabelKeyChar(rest[key_end])) ++key_end;
  r.key = std::string(rest.substr(0, key_end));
  if (r.key.empty()) return BadRequirement(req, "found '', expected: identifier");
  rest = Trim(rest.substr(key_end));
  if (r.op == Op::kNotExists) {
    if (!rest.empty()) return BadRequirement(req, "a '!' requirement takes no value");
    return r;
  }
  if (rest.empty()) {
    r.op = Op::kExists;
    return r;
  }
  std::string_view value;
  bool set = false;
  if (rest.starts_with("!=")) {
    r.op = Op::kNotEquals;
    value = rest.substr(2);
  } else if (rest.starts_with("==")) {
    r.op = Op::kEquals;
    value = rest.substr(2);
  } else if (rest.starts_with("=")) {
    r.op = Op::kEquals;
    value = rest.substr(1);
  } else if (rest.starts_with(">")) {
    r.op = Op::kGreater;
    value = rest.substr(1);
  } else if (rest.starts_with("<")) {
    r.op = Op::kLess;
    value = rest.substr(1);
  } else if (rest.starts_with("notin") && rest.size() > 5 &&
             (rest[5] == '(' || std::isspace(static_cast<unsigned char>(rest[5])))) {
    r.op = Op::kNotIn;
    value = rest.substr(5);
    set = true;
  } else if (rest.starts_with("in") && rest.size() > 2 &&
             (rest[2] == '(' || std::isspace(static_cast<unsigned char>(rest[2])))) {
    r.op = Op::kIn;
    value = rest.substr(2);
    set = true;
  } else {
    return BadRequirement(
        req, "found '" + std::string(rest) + "', expected: in, notin, =, ==, !=, gt, lt");
  }
  if (api::Status s = ParseValues(req, Trim(value), set, r); !s.ok()) return s;
  return r;
}

api::Status LabelSelector::ParseValues(std::string_view req, std::string_view value, bool set,
                                       Requirement& r) {
  if (set) {
    if (value.size() < 2 || value.front() != '(' || value.back() != ')') {
      return BadRequirement(req, "found '" + std::string(value) + "', expected: '(' ... ')'");
    }
    for (std::string_view v : SplitTopLevel(value.substr(1, value.size() - 2), ',')) {
      v = Trim(v);
      if (!std::all_of(v.begin(), v.end(), IsLabelValueChar)) {
        return BadRequirement(req, "invalid label value: \"" + std::string(v) + "\"");
      }
      r.values.emplace_back(v);
    }
    if (r.values.size() == 1 && r.values[0].empty()) {
      return BadRequirement(req, "for 'in', 'notin' operators, values set can't be empty");
    }
    return api::Status::Ok();
  }
  if (!std::all_of(value.begin(), value.end(), IsLabelValueChar)) {
    return BadRequirement(req, "invalid label value: \"" + std::string(value) + "\"");
  }
  if ((r.op == Op::kGreater || r.op == Op::kLess) && !ParseInt(value)) {
    return BadRequirement(req, "for 'Gt', 'Lt' operators, the value must be an integer");
  }
  r.values.emplace_back(value);
  return api::Status::Ok();
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    const bool has = it != labels.end();
    const auto listed = [&] {
      return has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end();
    };
    bool ok = false;
    switch (r.op) {
      case Op::kExists:
        ok = has;
        break;
      case Op::kNotExists:
        ok = !has;
        break;
      case Op::kEquals:
      case Op::kIn:
        ok = listed();
        break;
      case Op::kNotEquals:
      case Op::kNotIn:
        ok = !listed();
        break;
      case Op::kGreater:
      case Op::kLess: {
        std::optional<int64_t> have = has ? ParseInt(it->second) : std::nullopt;
        const int64_t want = *ParseInt(r.values[0]);
        ok = have && (r.op == Op::kGreater ? *have > want : *have < want);
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

api::StatusOr<FieldSelector> FieldSelector::Parse(std::string_view text,
                                                  const std::vector<std::string_view>& supported) {
  FieldSelector selector;
  if (Trim(text).empty()) return selector;
  // Split at commas that no backslash escapes.
  std::vector<std::string> terms(1);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      terms.back() += text[i];
      terms.back() += text[++i];
    } else if (text[i] == ',') {
      terms.emplace_back();
    } else {
      terms.back() += text[i];
    }
  }
  for (const std::string& term : terms) {
    Requirement r;
    size_t op = std::string::npos;
    size_t op_len = 0;
    for (size_t i = 0; i < term.size(); ++i) {
      if (term[i] == '\\') {
        ++i;
        continue;
      }
      if (term.compare(i, 2, "!=") == 0) {
        op = i, op_len = 2, r.equals = false;
      } else if (term.compare(i, 2, "==") == 0) {
        op = i, op_len = 2;
      } else if (term[i] == '=') {
        op = i, op_len = 1;
      }
      if (op != std::string::npos) break;
    }
    if (op == std::string::npos) {
      return api::Status::InvalidArgument("invalid selector: '" + std::string(text) +
                                          "'; can't understand '" + term + "'");
    }
    r.field = std::string(Trim(std::string_view(term).substr(0, op)));
    if (std::find(supported.begin(), supported.end(), r.field) == supported.end()) {
      return api::Status::InvalidArgument("field label not supported: " + r.field);
    }
    const std::string_view raw = std::string_view(term).substr(op + op_len);
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\\' && i + 1 < raw.size()) ++i;
      r.value += raw[i];
    }
    selector.requirements_.push_back(std::move(r));
  }
  return selector;
}

bool FieldSelector::Matches(const std::function<std::string(std::string_view)>& value_of) const {
  for (const Requirement& r : requirements_) {
    if ((value_of(r.field) == r.value) != r.equals) return false;
  }
  return true;
}

std::optional<std::string> FieldSelector::Required(std::string_view field) const {
  for (const Requirement& r : requirements_) {
    if (r.equals && r.field == field) return r.value;
  }
  return std::nullopt;
}

}  // namespace vmlet::controller
