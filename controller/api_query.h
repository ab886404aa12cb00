#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/status.h"

namespace vmlet::controller {

// The read API's query strings and the Kubernetes selectors they carry
// (pure functions, no I/O).

// The parameters of a URL query string, decoded as Go's url.ParseQuery does
// ('+' is a space, %XX a byte); the first value of a repeated key wins; a
// malformed escape is kept as written.
std::map<std::string, std::string> ParseQuery(std::string_view query);
// Percent-encodes `value` for a query string: every byte but the unreserved
// ones (A-Z a-z 0-9 - . _ ~).
std::string EncodeQueryValue(std::string_view value);

// A Kubernetes label selector: comma-separated requirements, each `key`,
// `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`,
// `key notin (v1,v2)`, `key>N` or `key<N` (integers). All must hold; `!=` and
// `notin` also hold when the label is absent. Empty selects everything.
class LabelSelector {
 public:
  LabelSelector() = default;
  // InvalidArgument with apimachinery's wording ("unable to parse
  // requirement: ...") for anything else.
  static api::StatusOr<LabelSelector> Parse(std::string_view text);
  bool Matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  enum class Op { kExists, kNotExists, kEquals, kNotEquals, kIn, kNotIn, kGreater, kLess };
  struct Requirement {
    std::string key;
    Op op = Op::kExists;
    std::vector<std::string> values;
  };
  static api::StatusOr<Requirement> ParseRequirement(std::string_view raw);
  // The value part of requirement `req` (`set`: a parenthesized list) into `r`.
  static api::Status ParseValues(std::string_view req, std::string_view value, bool set,
                                 Requirement& r);

  std::vector<Requirement> requirements_;
};

// A Kubernetes field selector: comma-separated `field=value`, `field==value`
// or `field!=value`; in values, a backslash escapes the next character (`\,`,
// `\=`, `\\`). All must hold.
class FieldSelector {
 public:
  FieldSelector() = default;
  // Only the fields in `supported` may be named: any other is InvalidArgument
  // "field label not supported: FIELD", as the API server says.
  static api::StatusOr<FieldSelector> Parse(std::string_view text,
                                            const std::vector<std::string_view>& supported);
  // `value_of(field)` gives the object's value of a supported field.
  bool Matches(const std::function<std::string(std::string_view field)>& value_of) const;
  // The value an `=`/`==` requirement demands of `field`, if there is one
  // (lets a lookup go straight to one VM).
  std::optional<std::string> Required(std::string_view field) const;
  bool empty() const { return requirements_.empty(); }

 private:
  struct Requirement {
    std::string field;
    bool equals = true;
    std::string value;
  };
  std::vector<Requirement> requirements_;
};

// ---------------------------------------------------------------------------
// The VM objects and their change log.

// Text helpers the API's parsers share.

// `s` without leading and trailing white space.
std::string_view Trim(std::string_view s);
// Splits `text` at `sep`, except inside parentheses; always at least one part.
std::vector<std::string_view> SplitTopLevel(std::string_view text, char sep);
// A whole decimal integer (an optional '-', digits), or none.
std::optional<int64_t> ParseInt(std::string_view text);

}  // namespace vmlet::controller
