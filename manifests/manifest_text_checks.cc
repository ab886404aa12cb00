#include "manifests/manifest_text_checks.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <nlohmann/json.hpp>
#include <sstream>

namespace vmlet::manifests::internal {
namespace {

ManifestError SyntaxError(std::string_view file, int line, int column, std::string reason) {
  return ManifestError{SourceLocation{std::string(file), line, column}, "-", std::move(reason),
                       ErrorKind::kSyntax, std::nullopt};
}

// Records where nlohmann's parser failed; accepts every value.
struct JsonErrorCatcher : nlohmann::json_sax<nlohmann::json> {
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
  std::string message;  // empty when parsing stopped for depth
};

// A code point decoded from UTF-8: its value and how many bytes it took.
struct CodePoint {
  uint32_t code = 0;
  size_t length = 1;
};

// The code point starting at content[i], or nothing when the bytes there
// are not well-formed UTF-8 (overlong, a surrogate, past U+10FFFF, cut off).
std::optional<CodePoint> DecodeUtf8(std::string_view content, size_t i) {
  const auto c = static_cast<unsigned char>(content[i]);
  if (c < 0x80) return CodePoint{c, 1};
  const size_t length = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (length == 0 || c >= 0xF5 || i + length > content.size()) return std::nullopt;
  uint32_t code = c & (0xFF >> (length + 1));
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(content[i + k]);
    if ((next & 0xC0) != 0x80) return std::nullopt;
    code = (code << 6) | (next & 0x3F);
  }
  static constexpr uint32_t kMinimum[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
    return std::nullopt;
  }
  return CodePoint{code, length};
}

bool IsPrintable(uint32_t code) {
  return code == '\t' || code == '\n' || code == '\r' ||
         (code >= 0x20 && code != 0x7F && !(code >= 0x80 && code <= 0x9F) && code != 0xFFFE &&
          code != 0xFFFF);
}

// Whether the quoted scalar that starts at content[i] (a '"' or '\'') is
// closed before the end of `content`.
bool QuoteIsClosed(std::string_view content, size_t i) {
  const char quote = content[i];
  for (++i; i < content.size(); ++i) {
    if (quote == '"' && content[i] == '\\') {
      ++i;
    } else if (content[i] == quote) {
      if (quote == '\'' && i + 1 < content.size() && content[i + 1] == '\'') {
        ++i;  // '' is an escaped quote
      } else {
        return true;
      }
    }
  }
  return false;
}

// Records where the last document started and the first quoted scalar that
// is never closed; ignores everything else.
class DocumentStartRecorder : public YAML::EventHandler {
 public:
  explicit DocumentStartRecorder(const std::string& content) : content_(content) {}

  void OnDocumentStart(const YAML::Mark& mark) override { last_start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    if (unterminated.has_value() || mark.pos < 0) return;
    const auto i = static_cast<size_t>(mark.pos);
    if (i >= content_.size() || (content_[i] != '"' && content_[i] != '\'')) return;
    if (!QuoteIsClosed(content_, i)) unterminated = mark;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  YAML::Mark last_start = YAML::Mark::null_mark();
  std::optional<YAML::Mark> unterminated;

 private:
  const std::string& content_;
};

}  // namespace

std::optional<ManifestError> CheckJsonSyntax(std::string_view file, std::string_view content) {
  JsonErrorCatcher catcher;
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
  return SyntaxError(file, line, column, "invalid JSON: " + reason);
}

std::optional<ManifestError> CheckCharacters(std::string_view file, std::string_view content) {
  int line = 1, column = 1;
  size_t i = 0;
  while (i < content.size()) {
    std::optional<CodePoint> point = DecodeUtf8(content, i);
    if (!point) return SyntaxError(file, line, column, "invalid UTF-8 byte sequence");
    if (!IsPrintable(point->code)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "%02X", point->code);
      std::string name = point->code == 0 ? "NUL" : "U+00" + std::string(hex);
      return SyntaxError(file, line, column,
                         "character " + name + " is not allowed in YAML or JSON text");
    }
    if (point->code == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
    i += point->length;
  }
  return std::nullopt;
}

std::optional<ManifestError> CheckYamlMakesProgress(std::string_view file,
                                                    const std::string& content) {
  DocumentStartRecorder recorder(content);
  try {
    std::istringstream in(content);
    YAML::Parser parser(in);
    int previous_pos = -1;
    while (parser.HandleNextDocument(recorder)) {
      const YAML::Mark& start = recorder.last_start;
      if (start.pos == previous_pos) {
        return SyntaxError(file, start.line + 1, start.column + 1,
                           "invalid YAML: unexpected text where a document or a key was expected");
      }
      previous_pos = start.pos;
    }
    if (recorder.unterminated) {
      const YAML::Mark& at = *recorder.unterminated;
      return SyntaxError(file, at.line + 1, at.column + 1,
                         "invalid YAML: quoted string is never closed (missing end quote)");
    }
  } catch (const std::exception&) {
    // LoadAll meets the same error and reports it.
  }
  return std::nullopt;
}

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

}  // namespace vmlet::manifests::internal
