#include "controller/status_api.h"

#include <cpprest/http_listener.h>
#include <cpprest/producerconsumerstream.h>
#include <fcntl.h>
#include <pplx/threadpool.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <exception>
#include <set>
#include <sstream>
#include <utility>

#include "controller/manager.h"
#include "manifests/spec_json.h"

namespace vmlet::controller {
namespace {

using nlohmann::json;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr std::string_view kGroup = "vmlet.dev";
constexpr std::string_view kVersion = "v1alpha1";
constexpr std::string_view kGroupVersion = "vmlet.dev/v1alpha1";
constexpr std::string_view kResource = "virtualmachines";
constexpr std::string_view kKind = "VirtualMachine";
constexpr std::string_view kJson = "application/json";

// ---------------------------------------------------------------------------
// Small text helpers.

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

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

// Splits at `sep`, except inside parentheses.
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

std::optional<int64_t> ParseInt(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// ---------------------------------------------------------------------------
// Object shapes.

json ObjectMeta(const VmObject& vm) {
  json meta = {{"name", vm.key.name},
               {"namespace", vm.key.ns},
               {"uid", VmUid(vm.key)},
               {"generation", vm.generation},
               {"resourceVersion", std::to_string(vm.resource_version)},
               {"creationTimestamp", FormatKubeTime(vm.created)}};
  if (!vm.labels().empty()) meta["labels"] = vm.labels();
  return meta;
}

json PartialObjectMetadata(json metadata, std::string_view table_version) {
  return {{"kind", "PartialObjectMetadata"},
          {"apiVersion", "meta.k8s.io/" + std::string(table_version)},
          {"metadata", std::move(metadata)}};
}

json Column(std::string_view name, std::string_view type, std::string_view format,
            std::string_view description, int priority) {
  return {{"name", name},
          {"type", type},
          {"format", format},
          {"description", description},
          {"priority", priority}};
}

json VmColumns() {
  return json::array({
      Column("Name", "string", "name",
             "Name must be unique within a namespace: the manifest's metadata.name.", 0),
      Column("Desired", "string", "",
             "What the manifest asks: Running, Paused, Stopped (or "
             "Deleted while its manifest is gone).",
             0),
      Column("Phase", "string", "",
             "What vmlet last observed: Starting, Running, Ready, Paused, Stopped, Failed.", 0),
      Column("IP", "string", "", "The address the guest reported with its ready marker.", 0),
      Column("Restarts", "integer", "", "Reboots after a crash or an unrequested power-off.", 0),
      Column("Age", "string", "",
             "CreationTimestamp: when this vmlet took the VM on (its state directory).", 0),
      // Shown by default, unlike a Pod's NODE: VMs of a fleet are read
      // node by node, and which node answered matters (docs/fleet.md).
      Column("Node", "string", "", "The node that runs it (spec.nodeName, else this node).", 0),
      Column("Driver", "string", "", "The driver of its VMM (else of its manifest).", 1),
  });
}

json EventColumns() {
  return json::array({
      Column("Last Seen", "string", "", "When the event was last seen.", 0),
      Column("Type", "string", "", "Normal or Warning.", 0),
      Column("Reason", "string", "", "Why, in CamelCase.", 0),
      Column("Object", "string", "", "The object it is about.", 0),
      Column("Subobject", "string", "", "The part of the object it is about.", 1),
      Column("Source", "string", "", "Who reported it.", 1),
      Column("Message", "string", "", "What happened, for people.", 0),
      Column("First Seen", "string", "", "When the event was first seen.", 1),
      Column("Count", "integer", "", "How many times it was seen.", 1),
      Column("Name", "string", "name", "The event's name.", 1),
  });
}

// What the Accept header asks for: a Table (of which meta.k8s.io version),
// or plain JSON.
struct AcceptTable {
  bool table = false;
  std::string version = "v1";
};

AcceptTable ParseAccept(std::string_view accept) {
  for (std::string_view media : SplitTopLevel(accept, ',')) {
    std::vector<std::string_view> parts = SplitTopLevel(media, ';');
    const std::string_view type = Trim(parts[0]);
    if (type != kJson && type != "*/*" && type != "application/*") continue;
    std::map<std::string, std::string, std::less<>> params;
    for (size_t i = 1; i < parts.size(); ++i) {
      std::string_view p = Trim(parts[i]);
      const size_t eq = p.find('=');
      if (eq == std::string_view::npos) continue;
      params[std::string(Trim(p.substr(0, eq)))] = std::string(Trim(p.substr(eq + 1)));
    }
    if (params.empty()) return {};  // plain JSON preferred here
    auto as = params.find("as");
    auto g = params.find("g");
    auto v = params.find("v");
    if (as != params.end() && as->second == "Table" && g != params.end() &&
        g->second == "meta.k8s.io" && v != params.end() &&
        (v->second == "v1" || v->second == "v1beta1")) {
      return {true, v->second};
    }
  }
  return {};
}

std::string TableContentType(const AcceptTable& accept) {
  return "application/json;as=Table;v=" + accept.version + ";g=meta.k8s.io";
}

IncludeObject ParseInclude(const std::map<std::string, std::string>& query) {
  auto it = query.find("includeObject");
  if (it == query.end()) return IncludeObject::kMetadata;
  if (it->second == "None") return IncludeObject::kNone;
  if (it->second == "Object") return IncludeObject::kObject;
  return IncludeObject::kMetadata;
}

ApiReply JsonReply(int code, const json& body, std::string content_type = std::string(kJson)) {
  ApiReply reply;
  reply.code = code;
  reply.content_type = std::move(content_type);
  reply.body = body.dump();
  return reply;
}

ApiReply StatusReply(int code, std::string_view reason, std::string_view message,
                     const json& details = nullptr) {
  return JsonReply(code, KubeStatus(code, reason, message, details));
}

ApiReply TextReply(int code, std::string text) {
  ApiReply reply;
  reply.code = code;
  reply.content_type = "text/plain; charset=utf-8";
  reply.body = std::move(text);
  return reply;
}

bool QueryFlag(const std::map<std::string, std::string>& query, const std::string& key) {
  auto it = query.find(key);
  return it != query.end() && (it->second == "true" || it->second == "1");
}

std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  for (std::string_view s : SplitTopLevel(path, '/')) {
    if (!s.empty()) segments.push_back(s);
  }
  return segments;
}

json ApiResource(std::string_view name, std::string_view singular, bool namespaced,
                 std::string_view kind, std::vector<std::string> verbs,
                 std::vector<std::string> short_names) {
  json r = {{"name", name},
            {"singularName", singular},
            {"namespaced", namespaced},
            {"kind", kind},
            {"verbs", verbs}};
  if (!short_names.empty()) r["shortNames"] = short_names;
  return r;
}

json GroupVersionFor() { return {{"groupVersion", kGroupVersion}, {"version", kVersion}}; }

json ApiGroup() {
  return {{"name", kGroup},
          {"versions", json::array({GroupVersionFor()})},
          {"preferredVersion", GroupVersionFor()}};
}

std::string Platform() {
#if defined(__x86_64__)
  return "linux/amd64";
#elif defined(__aarch64__)
  return "linux/arm64";
#else
  return "linux/unknown";
#endif
}

// The version's major and minor numbers, as strings ("0", "1").
std::pair<std::string, std::string> MajorMinor(const std::string& version) {
  const size_t dot = version.find('.');
  if (dot == std::string::npos) return {version, "0"};
  const size_t dot2 = version.find('.', dot + 1);
  return {version.substr(0, dot),
          version.substr(dot + 1, dot2 == std::string::npos ? std::string::npos : dot2 - dot - 1)};
}

std::string CellText(const json& cell) {
  if (cell.is_null()) return "";  // kubectl prints a null cell as nothing
  if (cell.is_string()) return cell.get<std::string>();
  if (cell.is_boolean()) return cell.get<bool>() ? "true" : "false";
  return cell.dump();
}

std::string TimeOr(const json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

std::string AgeSince(const std::string& time, WallTime now) {
  if (time.empty()) return "<unknown>";
  api::StatusOr<WallTime> t = ParseTime(time);
  if (!t.ok()) return "<unknown>";
  return FormatAge(now - *t);
}

// Go's text/tabwriter as kubectl configures it: cells are tab-terminated,
// a column block is a run of consecutive lines that have a cell in that
// column, every cell of a block is padded to max(minwidth, widest + padding),
// the text after a line's last tab is printed as is.
class TabWriter {
 public:
  TabWriter(size_t min_width, size_t padding) : min_width_(min_width), padding_(padding) {}

  void Write(std::string_view text) {
    for (char c : text) {
      if (c == '\n') {
        lines_.push_back(Split(current_));
        current_.clear();
      } else {
        current_ += c;
      }
    }
  }

  std::string Flush() {
    if (!current_.empty()) {
      lines_.push_back(Split(current_));
      current_.clear();
    }
    std::string out;
    std::vector<size_t> widths;
    Format(out, widths, 0, lines_.size());
    lines_.clear();
    return out;
  }

 private:
  // Characters, not bytes, as Go counts runes.
  static size_t Width(const std::string& cell) {
    return static_cast<size_t>(std::count_if(cell.begin(), cell.end(), [](char c) {
      return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
  }

  static std::vector<std::string> Split(const std::string& line) {
    std::vector<std::string> cells;
    size_t start = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      if (line[i] == '\t') {
        cells.push_back(line.substr(start, i - start));
        start = i + 1;
      }
    }
    cells.push_back(line.substr(start));
    return cells;
  }

  void WriteLines(std::string& out, const std::vector<size_t>& widths, size_t from,
                  size_t to) const {
    for (size_t i = from; i < to; ++i) {
      const std::vector<std::string>& cells = lines_[i];
      for (size_t j = 0; j < cells.size(); ++j) {
        out += cells[j];
        if (j + 1 < cells.size() && j < widths.size() && Width(cells[j]) < widths[j]) {
          out.append(widths[j] - Width(cells[j]), ' ');
        }
      }
      out += '\n';
    }
  }

  void Format(std::string& out, std::vector<size_t>& widths, size_t line0, size_t line1) const {
    const size_t column = widths.size();
    for (size_t row = line0; row < line1; ++row) {
      if (column + 1 >= lines_[row].size()) continue;
      WriteLines(out, widths, line0, row);
      line0 = row;
      size_t width = min_width_;
      for (; row < line1; ++row) {
        if (column + 1 >= lines_[row].size()) break;
        width = std::max(width, Width(lines_[row][column]) + padding_);
      }
      widths.push_back(width);
      Format(out, widths, line0, row);
      widths.pop_back();
      line0 = row;
      // The line that ended the block has no cell here: the loop skips it.
    }
    WriteLines(out, widths, line0, line1);
  }

  const size_t min_width_;
  const size_t padding_;
  std::string current_;
  std::vector<std::vector<std::string>> lines_;
};

// kubectl describe's smartLabelFor: camelCase words, title-cased, common
// acronyms upper-cased ("memoryMb" -> "Memory Mb", "uid" -> "UID").
std::string SmartLabel(std::string_view field) {
  std::vector<std::string> words;
  std::string word;
  for (size_t i = 0; i < field.size(); ++i) {
    const char c = field[i];
    const bool upper = std::isupper(static_cast<unsigned char>(c));
    const bool digit = std::isdigit(static_cast<unsigned char>(c));
    const bool prev_digit = !word.empty() && std::isdigit(static_cast<unsigned char>(word.back()));
    if (!word.empty() && (upper || digit != prev_digit)) {
      words.push_back(word);
      word.clear();
    }
    word += c;
  }
  if (!word.empty()) words.push_back(word);
  std::string label;
  for (std::string& w : words) {
    std::string up = w;
    for (char& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (up == "API" || up == "URL" || up == "UID" || up == "OSB" || up == "GUID") {
      w = up;
    } else {
      w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
    }
    if (!label.empty()) label += ' ';
    label += w;
  }
  return label;
}

std::string ScalarText(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "<nil>";
  return value.dump();
}

// kubectl describe's printUnstructuredContent: sorted keys, maps and lists
// as nested sections, scalars as "Label:\tvalue".
void DescribeContent(TabWriter& w, int level, const json& content,
                     const std::set<std::string>& skip = {}) {
  const std::string indent(static_cast<size_t>(level) * 2, ' ');
  for (const auto& [field, value] : content.items()) {
    if (skip.contains(field)) continue;
    if (value.is_object()) {
      w.Write(indent + SmartLabel(field) + ":\n");
      DescribeContent(w, level + 1, value);
    } else if (value.is_array()) {
      w.Write(indent + SmartLabel(field) + ":\n");
      for (const json& child : value) {
        if (child.is_object()) {
          DescribeContent(w, level + 1, child);
        } else {
          w.Write(indent + "  " + ScalarText(child) + "\n");
        }
      }
    } else {
      w.Write(indent + SmartLabel(field) + ":\t" + ScalarText(value) + "\n");
    }
  }
}

std::string EventName(const api::VmKey& key, WallTime time) {
  const auto ns = duration_cast<nanoseconds>(time.time_since_epoch()).count();
  char hex[32];
  std::snprintf(hex, sizeof hex, "%llx", static_cast<unsigned long long>(ns));
  return key.name + "." + hex;
}

}  // namespace

// ---------------------------------------------------------------------------
// Vocabulary.

std::string FormatAge(nanoseconds age) {
  // k8s.io/apimachinery/pkg/util/duration.HumanDuration.
  const int64_t secs = duration_cast<seconds>(age).count();
  if (secs < -1) return "<invalid>";
  if (secs < 0) return "0s";
  if (secs < 60 * 2) return std::to_string(secs) + "s";
  const int64_t minutes = secs / 60;
  if (minutes < 10) {
    const int64_t s = secs % 60;
    if (s == 0) return std::to_string(minutes) + "m";
    return std::to_string(minutes) + "m" + std::to_string(s) + "s";
  }
  if (minutes < 60 * 3) return std::to_string(minutes) + "m";
  const int64_t hours = secs / 3600;
  if (hours < 8) {
    const int64_t m = minutes % 60;
    if (m == 0) return std::to_string(hours) + "h";
    return std::to_string(hours) + "h" + std::to_string(m) + "m";
  }
  if (hours < 48) return std::to_string(hours) + "h";
  if (hours < 24 * 8) {
    const int64_t h = hours % 24;
    if (h == 0) return std::to_string(hours / 24) + "d";
    return std::to_string(hours / 24) + "d" + std::to_string(h) + "h";
  }
  if (hours < 24 * 365 * 2) return std::to_string(hours / 24) + "d";
  if (hours < 24 * 365 * 8) {
    const int64_t days = (hours / 24) % 365;
    if (days == 0) return std::to_string(hours / 24 / 365) + "y";
    return std::to_string(hours / 24 / 365) + "y" + std::to_string(days) + "d";
  }
  return std::to_string(hours / 24 / 365) + "y";
}

std::string FormatKubeTime(WallTime time) {
  const time_t secs = std::chrono::system_clock::to_time_t(std::chrono::floor<seconds>(time));
  tm utc{};
  gmtime_r(&secs, &utc);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string VmUid(const api::VmKey& key) {
  const std::string hex =
      manifests::Sha256Hex(std::string(kGroupVersion) + "/" + key.ns + "/" + key.name);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
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
      selector.requirements_.push_back(std::move(r));
      continue;
    }
    if (rest.empty()) {
      r.op = Op::kExists;
      selector.requirements_.push_back(std::move(r));
      continue;
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
    value = Trim(value);
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
    } else {
      if (!std::all_of(value.begin(), value.end(), IsLabelValueChar)) {
        return BadRequirement(req, "invalid label value: \"" + std::string(value) + "\"");
      }
      if ((r.op == Op::kGreater || r.op == Op::kLess) && !ParseInt(value)) {
        return BadRequirement(req, "for 'Gt', 'Lt' operators, the value must be an integer");
      }
      r.values.emplace_back(value);
    }
    selector.requirements_.push_back(std::move(r));
  }
  return selector;
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

// ---------------------------------------------------------------------------
// Objects.

const std::map<std::string, std::string>& VmObject::labels() const {
  static const std::map<std::string, std::string> kNone;
  return desired ? desired->spec.labels : kNone;
}

json VmToJson(const VmObject& vm) {
  json j = {{"apiVersion", kGroupVersion}, {"kind", kKind}, {"metadata", ObjectMeta(vm)}};
  j["spec"] = vm.desired ? manifests::SpecToJson(vm.desired->spec)["spec"] : json::object();
  j["status"] = vm.status ? ToJson(*vm.status) : json::object();
  return j;
}

json KubeStatus(int code, std::string_view reason, std::string_view message, const json& details) {
  json j = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) j["details"] = details;
  return j;
}

json VmNotFound(std::string_view name) {
  return KubeStatus(404, "NotFound",
                    std::string(kResource) + "." + std::string(kGroup) + " \"" + std::string(name) +
                        "\" not found",
                    {{"name", name}, {"group", kGroup}, {"kind", kResource}});
}

// ---------------------------------------------------------------------------
// The change log.

VmChangeLog::VmChangeLog(size_t max_changes) : max_changes_(std::max<size_t>(1, max_changes)) {}

namespace {

bool SameSpec(const std::shared_ptr<const manifests::DesiredVm>& a,
              const std::shared_ptr<const manifests::DesiredVm>& b) {
  if (a == b) return true;
  return a && b && a->spec == b->spec;
}

}  // namespace

bool VmChangeLog::Record(const api::VmKey& key, const VmObservation& observed, WallTime created) {
  std::lock_guard lock(mu_);
  auto it = vms_.find(key);
  Change change;
  if (!observed.exists()) {
    if (it == vms_.end()) return false;
    change.type = ChangeType::kDeleted;
    change.previous = it->second;
    change.object = it->second;
    change.object.resource_version = ++version_;
    vms_.erase(it);
  } else if (it == vms_.end()) {
    change.type = ChangeType::kAdded;
    change.object = VmObject{key, observed.desired, observed.status, created, 1, ++version_};
    vms_.emplace(key, change.object);
  } else {
    VmObject& now = it->second;
    // While a VM is being deleted its last spec stays (status says Deleted).
    const std::shared_ptr<const manifests::DesiredVm>& spec =
        observed.desired ? observed.desired : now.desired;
    const bool spec_changed = !SameSpec(now.desired, spec);
    if (!spec_changed && now.status == observed.status) {
      now.desired = spec;  // an equal spec from a newer scan
      return false;
    }
    change.type = ChangeType::kModified;
    change.previous = now;
    if (spec_changed && now.desired && spec) ++now.generation;
    now.desired = spec;
    now.status = observed.status;
    now.resource_version = ++version_;
    change.object = now;
  }
  changes_.push_back(std::move(change));
  while (changes_.size() > max_changes_) {
    oldest_kept_ = changes_.front().object.resource_version + 1;
    changes_.pop_front();
  }
  return true;
}

uint64_t VmChangeLog::resource_version() const {
  std::lock_guard lock(mu_);
  return version_;
}

VmChangeLog::Listing VmChangeLog::List() const {
  std::lock_guard lock(mu_);
  Listing listing;
  listing.resource_version = version_;
  listing.items.reserve(vms_.size());
  for (const auto& [key, vm] : vms_) listing.items.push_back(vm);
  return listing;
}

bool VmChangeLog::Contains(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  return vms_.contains(key);
}

std::optional<VmObject> VmChangeLog::Get(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  auto it = vms_.find(key);
  if (it == vms_.end()) return std::nullopt;
  return it->second;
}

VmChangeLog::Changes VmChangeLog::Since(uint64_t since) const {
  std::lock_guard lock(mu_);
  Changes out;
  out.resource_version = version_;
  if (since + 1 < oldest_kept_) {
    out.expired = true;
    return out;
  }
  // Versions are consecutive: the change with version v sits at v - first.
  if (!changes_.empty() && since < version_) {
    const uint64_t first = changes_.front().object.resource_version;
    for (size_t i = since >= first ? since - first + 1 : 0; i < changes_.size(); ++i) {
      out.changes.push_back(changes_[i]);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// The controller as a source.

api::StatusOr<std::vector<api::VmKey>> ManagerVmSource::Keys() const {
  std::set<api::VmKey> keys;
  for (const api::VmKey& key : manager_.desired().Keys()) keys.insert(key);
  api::StatusOr<std::vector<api::VmKey>> stored = store_.ListVms();
  if (!stored.ok()) return stored.status();
  keys.insert(stored->begin(), stored->end());
  return std::vector<api::VmKey>(keys.begin(), keys.end());
}

VmObservation ManagerVmSource::Observe(const api::VmKey& key) const {
  VmObservation o;
  o.desired = manager_.desired().Get(key).vm;
  o.status = manager_.reconciler().StatusOf(key);
  // Before the reconciler's first look after a restart, status.json is what
  // it last wrote.
  if (!o.status && store_.VmDirExists(key)) {
    o.status = store_.LoadStatus(key);
  }
  return o;
}

std::optional<WallTime> ManagerVmSource::CreatedAt(const api::VmKey& key) const {
  struct statx st {};
  if (::statx(AT_FDCWD, store_.VmDir(key).c_str(), 0, STATX_BTIME, &st) != 0 ||
      !(st.stx_mask & STATX_BTIME)) {
    return std::nullopt;
  }
  return WallTime(duration_cast<WallTime::duration>(seconds(st.stx_btime.tv_sec) +
                                                    nanoseconds(st.stx_btime.tv_nsec)));
}

std::vector<Event> ManagerVmSource::RecentEvents(const api::VmKey& key, size_t max) const {
  return store_.RecentEvents(key, max);
}

bool ManagerVmSource::Synced() const { return manager_.synced(); }

// ---------------------------------------------------------------------------
// The server: cpprestsdk's listener and the open watch streams.

class StatusApi::Server {
 public:
  struct Stream {
    std::shared_ptr<WatchState> watch;
    concurrency::streams::producer_consumer_buffer<uint8_t> buffer;
    // Since when bytes written to it have waited unread.
    std::optional<api::Clock::MonotonicTime> unread_since;
    bool closed = false;
  };

  Server(StatusApi& api, const std::string& uri) : api_(api), listener_(uri) {}

  api::Status Open() {
    listener_.support([this](web::http::http_request request) { Serve(std::move(request)); });
    listener_.open().wait();
    return api::Status::Ok();
  }

  void Close() {
    try {
      listener_.close().wait();
    } catch (const std::exception& e) {
      spdlog::warn("event=ApiCloseError {}", e.what());
    }
  }

  // Guarded by StatusApi::mu_.
  std::vector<std::shared_ptr<Stream>> streams;

 private:
  void Serve(web::http::http_request request) {
    ApiRequest r;
    r.method = request.method();
    const web::uri& uri = request.request_uri();
    r.path = uri.path();
    r.query = ParseQuery(uri.query());
    auto accept = request.headers().find("Accept");
    if (accept != request.headers().end()) r.accept = accept->second;

    ApiReply reply;
    try {
      reply = api_.Handle(r);
    } catch (const std::exception& e) {
      spdlog::error("event=ApiError path={} {}", r.path, e.what());
      reply = StatusReply(500, "InternalError", std::string("internal error: ") + e.what());
    }
    web::http::http_response response(static_cast<web::http::status_code>(reply.code));
    for (const auto& [name, value] : reply.headers) response.headers().add(name, value);
    if (reply.watch) {
      auto stream = std::make_shared<Stream>();
      stream->watch = reply.watch;
      response.set_body(concurrency::streams::istream(stream->buffer), reply.content_type);
      bool registered = false;
      {
        std::lock_guard lock(api_.mu_);
        if (!api_.stopping_) {
          streams.push_back(stream);
          api_.changed_ = true;
          registered = true;
        }
      }
      if (registered) {
        api_.cv_.notify_all();
      } else {
        stream->buffer.close(std::ios_base::out).wait();
      }
    } else {
      response.set_body(std::move(reply.body), reply.content_type);
    }
    // An unobserved failed task would end the process: observe it.
    request.reply(response).then([](const pplx::task<void>& sent) {
      try {
        sent.get();
      } catch (const std::exception&) {
        // The client went away; nothing to do.
      }
    });
  }

  StatusApi& api_;
  web::http::experimental::listener::http_listener listener_;
};

// ---------------------------------------------------------------------------
// The API.

StatusApi::StatusApi(Options options, api::Clock& clock, VmSource& source)
    : options_(std::move(options)), clock_(clock), source_(source), log_(options_.max_changes) {}

StatusApi::~StatusApi() { Stop(); }

void StatusApi::Refresh(const api::VmKey& key) {
  VmObservation observed = source_.Observe(key);
  WallTime created{};
  if (observed.exists() && !log_.Contains(key)) {
    created = source_.CreatedAt(key).value_or(clock_.WallNow());
  }
  if (log_.Record(key, observed, created)) {
    {
      std::lock_guard lock(mu_);
      changed_ = true;
    }
    cv_.notify_all();
  }
}

api::Status StatusApi::RefreshAll() {
  api::StatusOr<std::vector<api::VmKey>> keys = source_.Keys();
  if (!keys.ok()) return keys.status();
  std::set<api::VmKey> all(keys->begin(), keys->end());
  for (const VmObject& vm : log_.List().items) all.insert(vm.key);
  for (const api::VmKey& key : all) Refresh(key);
  return api::Status::Ok();
}

api::Status StatusApi::Start() {
  const std::string uri = "http://" + options_.address;
  try {
    auto server = std::make_unique<Server>(*this, uri);
    if (api::Status s = server->Open(); !s.ok()) return s;
    server_ = std::move(server);
  } catch (const std::exception& e) {
    return api::Status::Unavailable("cannot serve the API on " + options_.address + ": " +
                                    e.what());
  }
  {
    std::lock_guard lock(mu_);
    stopping_ = false;
  }
  pump_ = std::thread([this] { Pump(); });
  return api::Status::Ok();
}

void StatusApi::Stop() {
  if (!server_) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (pump_.joinable()) pump_.join();
  server_->Close();
  server_.reset();
}

void StatusApi::Pump() {
  std::unique_lock lock(mu_);
  while (true) {
    // Open streams are looked at every second (timeouts, stalled clients);
    // without any, only a change or Stop() wakes the pump.
    const auto tick = server_->streams.empty() ? std::chrono::hours(24) : seconds(1);
    clock_.WaitUntil(cv_, lock, clock_.MonotonicNow() + tick,
                     [this] { return stopping_ || changed_; });
    const bool stopping = stopping_;
    changed_ = false;
    std::vector<std::shared_ptr<Server::Stream>> streams = server_->streams;
    lock.unlock();
    const api::Clock::MonotonicTime now = clock_.MonotonicNow();
    for (const std::shared_ptr<Server::Stream>& s : streams) {
      try {
        if (!stopping) {
          const std::string lines = NextWatchLines(*s->watch);
          if (!lines.empty()) {
            s->buffer.putn_nocopy(reinterpret_cast<const uint8_t*>(lines.data()), lines.size())
                .wait();
            s->buffer.sync().wait();
          }
        }
        // cpprestsdk does not tell when a client goes away; one that leaves
        // what was written unread is taken as gone.
        if (s->buffer.in_avail() == 0) {
          s->unread_since.reset();
        } else if (!s->unread_since) {
          s->unread_since = now;
        } else if (now - *s->unread_since >= options_.watch_stall) {
          s->watch->done = true;
        }
        if (stopping || s->watch->done) {
          s->buffer.close(std::ios_base::out).wait();
          s->closed = true;
        }
      } catch (const std::exception& e) {
        spdlog::debug("event=WatchEnded {}", e.what());
        s->closed = true;
      }
    }
    lock.lock();
    std::erase_if(server_->streams, [](const auto& s) { return s->closed; });
    if (stopping) return;
  }
}

std::map<std::string, size_t> StatusApi::PhaseCounts() const {
  std::map<std::string, size_t> counts;
  for (const VmObject& vm : log_.List().items) {
    const std::string phase = vm.status ? vm.status->phase : "";
    ++counts[phase.empty() ? "Unknown" : phase];
  }
  return counts;
}

namespace {

// Does the watch or list with these filters select `vm`?
bool Selects(const std::string& ns, const std::string& name, const LabelSelector& labels,
             const FieldSelector& fields, const VmObject& vm) {
  if (!ns.empty() && vm.key.ns != ns) return false;
  if (!name.empty() && vm.key.name != name) return false;
  if (!labels.Matches(vm.labels())) return false;
  return fields.Matches(
      [&](std::string_view field) { return field == "metadata.name" ? vm.key.name : vm.key.ns; });
}

const std::vector<std::string_view> kVmFields = {"metadata.name", "metadata.namespace"};
const std::vector<std::string_view> kEventFields = {"involvedObject.kind",
                                                    "involvedObject.namespace",
                                                    "involvedObject.name",
                                                    "involvedObject.uid",
                                                    "involvedObject.apiVersion",
                                                    "involvedObject.resourceVersion",
                                                    "involvedObject.fieldPath",
                                                    "reason",
                                                    "reportingComponent",
                                                    "source",
                                                    "type",
                                                    "metadata.name",
                                                    "metadata.namespace"};

}  // namespace

namespace {

// The Table of `vms` (kubectl's `get` asks for it): columns, and per VM its
// cells and the object as includeObject asks.
json VmTable(const std::vector<VmObject>& vms, uint64_t resource_version, bool columns,
             const std::string& table_version, IncludeObject include, const std::string& node_name,
             WallTime now) {
  json rows = json::array();
  for (const VmObject& vm : vms) {
    const VmStatus* status = vm.status ? &*vm.status : nullptr;
    std::string desired = status && !status->desired_state.empty() ? status->desired_state : "";
    if (desired.empty() && vm.desired) desired = api::ToString(vm.desired->spec.desired_state);
    std::string phase = status && !status->phase.empty() ? status->phase : "Unknown";
    // Missing values read "<none>", as the API server's own tables say.
    std::string ip = status && !status->ip.empty() ? status->ip : "<none>";
    std::string node =
        vm.desired && vm.desired->spec.node_name ? *vm.desired->spec.node_name : node_name;
    std::string driver = "<none>";
    if (status && status->vmm) {
      driver = status->vmm->driver;
    } else if (vm.desired) {
      driver = vm.desired->spec.driver;
    }
    json row = {{"cells",
                 {vm.key.name, desired.empty() ? "<none>" : desired, phase, ip,
                  status ? status->restart_count : 0, FormatAge(now - vm.created), node, driver}}};
    if (include == IncludeObject::kMetadata) {
      row["object"] = PartialObjectMetadata(ObjectMeta(vm), table_version);
    } else if (include == IncludeObject::kObject) {
      row["object"] = VmToJson(vm);
    }
    rows.push_back(std::move(row));
  }
  json table = {{"kind", "Table"},
                {"apiVersion", "meta.k8s.io/" + table_version},
                {"metadata", {{"resourceVersion", std::to_string(resource_version)}}},
                {"columnDefinitions", columns ? VmColumns() : json::array()},
                {"rows", std::move(rows)}};
  return table;
}

}  // namespace

ApiReply StatusApi::Handle(const ApiRequest& request) {
  if (request.method != "GET") {
    ApiReply reply = StatusReply(405, "MethodNotAllowed",
                                 "the vmlet API is read-only: " + request.method +
                                     " is not allowed "
                                     "on the requested resource (only GET)");
    reply.headers.emplace_back("Allow", "GET");
    return reply;
  }
  const std::vector<std::string_view> p = SplitPath(request.path);
  const auto is = [&](std::initializer_list<std::string_view> want) {
    return p.size() == want.size() && std::equal(want.begin(), want.end(), p.begin());
  };

  if (p.empty()) {
    return JsonReply(200,
                     {{"paths",
                       {"/api", "/api/v1", "/apis", "/apis/vmlet.dev", "/apis/vmlet.dev/v1alpha1",
                        "/healthz", "/livez", "/readyz", "/version"}}});
  }
  if (is({"healthz"}) || is({"livez"})) return TextReply(200, "ok");
  if (is({"readyz"})) {
    if (source_.Synced()) return TextReply(200, "ok");
    return TextReply(503, "not ready: the manifest directory has not been read in full yet");
  }
  if (is({"version"})) {
    const auto [major, minor] = MajorMinor(options_.version);
    return JsonReply(200, {
      {"major", major}, {"minor", minor}, {"gitVersion", "v" + options_.version}, {"gitCommit", ""},
          {"gitTreeState", ""}, {"buildDate", ""}, {"goVersion", ""},
#if defined(__clang__)
          {"compiler", "clang"},
#else
                           {"compiler", "gcc"},
#endif
      {
        "platform", Platform()
      }
    });
  }
  if (is({"api"})) {
    return JsonReply(200, {{"kind", "APIVersions"},
                           {"versions", {"v1"}},
                           {"serverAddressByClientCIDRs",
                            {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", options_.address}}}}});
  }
  if (is({"api", "v1"})) {
    return JsonReply(
        200,
        {{"kind", "APIResourceList"},
         {"apiVersion", "v1"},
         {"groupVersion", "v1"},
         {"resources",
          {ApiResource("events", "event", true, "Event", {"get", "list"}, {"ev"}),
           ApiResource("namespaces", "namespace", false, "Namespace", {"get", "list"}, {"ns"})}}});
  }
  if (is({"api", "v1", "namespaces"})) return ListNamespaces(request, std::nullopt);
  if (p.size() == 4 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces") {
    return ListNamespaces(request, std::string(p[3]));
  }
  if (is({"apis"})) {
    return JsonReply(
        200,
        {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", json::array({ApiGroup()})}});
  }
  if (is({"apis", kGroup})) {
    json group = ApiGroup();
    group["kind"] = "APIGroup";
    group["apiVersion"] = "v1";
    return JsonReply(200, group);
  }
  if (is({"apis", kGroup, kVersion})) {
    return JsonReply(200, {{"kind", "APIResourceList"},
                           {"apiVersion", "v1"},
                           {"groupVersion", kGroupVersion},
                           {"resources",
                            {ApiResource(kResource, "virtualmachine", true, kKind,
                                         {"get", "list", "watch"}, {"vm"})}}});
  }
  if (is({"apis", kGroup, kVersion, kResource})) return ListOrWatchVms(request, "");
  if (p.size() >= 6 && p[0] == "apis" && p[1] == kGroup && p[2] == kVersion &&
      p[3] == "namespaces" && p[5] == kResource) {
    if (p.size() == 6) return ListOrWatchVms(request, std::string(p[4]));
    if (p.size() == 7) return GetVm(request, {std::string(p[4]), std::string(p[6])});
  }
  if (is({"api", "v1", "events"})) return ListEvents(request, "", std::nullopt);
  if (p.size() >= 5 && p[0] == "api" && p[1] == "v1" && p[2] == "namespaces" && p[4] == "events") {
    if (p.size() == 5) return ListEvents(request, std::string(p[3]), std::nullopt);
    if (p.size() == 6) return ListEvents(request, std::string(p[3]), std::string(p[5]));
  }
  return StatusReply(404, "NotFound", "the server could not find the requested resource",
                     {{"causes",
                       {{{"reason", "UnexpectedServerResponse"},
                         {"message", "404 page not found: " + request.path}}}}});
}

ApiReply StatusApi::ListOrWatchVms(const ApiRequest& request, const std::string& ns,
                                   const std::string& name) {
  const auto param = [&](const std::string& key) {
    auto it = request.query.find(key);
    return it == request.query.end() ? std::string() : it->second;
  };
  api::StatusOr<LabelSelector> labels = LabelSelector::Parse(param("labelSelector"));
  if (!labels.ok()) return StatusReply(400, "BadRequest", labels.status().message());
  api::StatusOr<FieldSelector> fields = FieldSelector::Parse(param("fieldSelector"), kVmFields);
  if (!fields.ok()) return StatusReply(400, "BadRequest", fields.status().message());
  const AcceptTable accept = ParseAccept(request.accept);
  const IncludeObject include = ParseInclude(request.query);

  if (QueryFlag(request.query, "watch")) {
    auto watch = std::make_shared<WatchState>();
    watch->ns = ns;
    watch->name = name;
    watch->labels = *labels;
    watch->fields = *fields;
    watch->table = accept.table;
    watch->table_version = accept.version;
    watch->include = include;
    const std::string rv = param("resourceVersion");
    if (rv.empty() || rv == "0") {
      watch->send_initial = true;
    } else if (std::optional<int64_t> v = ParseInt(rv); v && *v >= 0) {
      watch->resource_version = static_cast<uint64_t>(*v);
    } else {
      return StatusReply(400, "BadRequest", "invalid resourceVersion \"" + rv + "\"");
    }
    std::chrono::seconds timeout = options_.max_watch;
    if (std::optional<int64_t> t = ParseInt(param("timeoutSeconds")); t && *t > 0) {
      timeout = std::min<std::chrono::seconds>(timeout, seconds(*t));
    }
    watch->deadline = clock_.MonotonicNow() + timeout;
    ApiReply reply;
    reply.content_type = std::string(kJson);
    reply.watch = std::move(watch);
    return reply;
  }

  VmChangeLog::Listing listing = log_.List();
  std::vector<VmObject> selected;
  for (VmObject& vm : listing.items) {
    if (Selects(ns, name, *labels, *fields, vm)) selected.push_back(std::move(vm));
  }
  if (accept.table) {
    return JsonReply(200,
                     VmTable(selected, listing.resource_version, true, accept.version, include,
                             options_.node_name, clock_.WallNow()),
                     TableContentType(accept));
  }
  json items = json::array();
  for (const VmObject& vm : selected) items.push_back(VmToJson(vm));
  return JsonReply(200,
                   {{"kind", "VirtualMachineList"},
                    {"apiVersion", kGroupVersion},
                    {"metadata", {{"resourceVersion", std::to_string(listing.resource_version)}}},
                    {"items", std::move(items)}});
}

ApiReply StatusApi::GetVm(const ApiRequest& request, const api::VmKey& key) {
  if (QueryFlag(request.query, "watch")) return ListOrWatchVms(request, key.ns, key.name);
  std::optional<VmObject> vm = log_.Get(key);
  if (!vm) return JsonReply(404, VmNotFound(key.name));
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    return JsonReply(200,
                     VmTable({*vm}, vm->resource_version, true, accept.version,
                             ParseInclude(request.query), options_.node_name, clock_.WallNow()),
                     TableContentType(accept));
  }
  return JsonReply(200, VmToJson(*vm));
}

ApiReply StatusApi::ListEvents(const ApiRequest& request, const std::string& ns,
                               const std::optional<std::string>& name) {
  if (QueryFlag(request.query, "watch")) {
    return StatusReply(405, "MethodNotAllowed", "events cannot be watched here (get, list)");
  }
  auto it = request.query.find("fieldSelector");
  api::StatusOr<FieldSelector> fields =
      FieldSelector::Parse(it == request.query.end() ? "" : it->second, kEventFields);
  if (!fields.ok()) return StatusReply(400, "BadRequest", fields.status().message());

  // Read only the event files the selector can match.
  std::vector<api::VmKey> keys;
  if (std::optional<std::string> vm_name = fields->Required("involvedObject.name")) {
    std::string vm_ns = ns;
    if (vm_ns.empty()) vm_ns = fields->Required("involvedObject.namespace").value_or("");
    if (!vm_ns.empty()) keys.push_back({vm_ns, *vm_name});
  }
  if (keys.empty()) {
    api::StatusOr<std::vector<api::VmKey>> all = source_.Keys();
    if (!all.ok()) return StatusReply(500, "InternalError", all.status().message());
    for (const api::VmKey& key : *all) {
      if (ns.empty() || key.ns == ns) keys.push_back(key);
    }
  }

  const uint64_t resource_version = log_.resource_version();
  const std::string rv = std::to_string(resource_version);
  std::vector<std::pair<WallTime, json>> items;
  for (const api::VmKey& key : keys) {
    const std::string uid = VmUid(key);
    std::set<std::string> names;
    for (const Event& e : source_.RecentEvents(key, options_.max_events)) {
      WallTime stamp = e.time;
      std::string event_name = EventName(key, stamp);
      while (!names.insert(event_name).second) {
        stamp += nanoseconds(1);
        event_name = EventName(key, stamp);
      }
      const std::string when = FormatKubeTime(e.time);
      json event = {
          {"kind", "Event"},
          {"apiVersion", "v1"},
          {"metadata",
           {{"name", event_name},
            {"namespace", key.ns},
            {"uid", VmUid({key.ns, event_name})},
            {"resourceVersion", rv},
            {"creationTimestamp", when}}},
          {"involvedObject",
           {{"apiVersion", kGroupVersion},
            {"kind", kKind},
            {"name", key.name},
            {"namespace", key.ns},
            {"uid", uid}}},
          {"reason", e.reason},
          {"message", e.message},
          {"type", e.type},
          {"firstTimestamp", when},
          {"lastTimestamp", when},
          {"eventTime", nullptr},
          {"count", 1},
          {"source", {{"component", "vmlet"}, {"host", options_.node_name}}},
          {"reportingComponent", "vmlet"},
          {"reportingInstance", options_.node_name},
      };
      const bool match = fields->Matches([&](std::string_view field) -> std::string {
        if (field == "involvedObject.kind") return std::string(kKind);
        if (field == "involvedObject.namespace" || field == "metadata.namespace") return key.ns;
        if (field == "involvedObject.name") return key.name;
        if (field == "involvedObject.uid") return uid;
        if (field == "involvedObject.apiVersion") return std::string(kGroupVersion);
        if (field == "reason") return e.reason;
        if (field == "type") return e.type;
        if (field == "source" || field == "reportingComponent") return "vmlet";
        if (field == "metadata.name") return event_name;
        return "";
      });
      if (!match) continue;
      if (name && event_name != *name) continue;
      items.emplace_back(e.time, std::move(event));
    }
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  if (name) {
    if (items.empty()) {
      return StatusReply(404, "NotFound", "events \"" + *name + "\" not found",
                         {{"name", *name}, {"kind", "events"}});
    }
    return JsonReply(200, items.front().second);
  }
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    const IncludeObject include = ParseInclude(request.query);
    const WallTime now = clock_.WallNow();
    json rows = json::array();
    for (const auto& [time, e] : items) {
      const std::string age = FormatAge(now - time);
      json row = {{"cells",
                   {age, e["type"], e["reason"],
                    "virtualmachine/" + e["involvedObject"]["name"].get<std::string>(), "",
                    "vmlet, " + options_.node_name, e["message"], age, 1, e["metadata"]["name"]}}};
      if (include == IncludeObject::kMetadata) {
        row["object"] = PartialObjectMetadata(e["metadata"], accept.version);
      } else if (include == IncludeObject::kObject) {
        row["object"] = e;
      }
      rows.push_back(std::move(row));
    }
    return JsonReply(200,
                     {{"kind", "Table"},
                      {"apiVersion", "meta.k8s.io/" + accept.version},
                      {"metadata", {{"resourceVersion", rv}}},
                      {"columnDefinitions", EventColumns()},
                      {"rows", std::move(rows)}},
                     TableContentType(accept));
  }
  json list = json::array();
  for (auto& [time, e] : items) list.push_back(std::move(e));
  return JsonReply(200, {{"kind", "EventList"},
                         {"apiVersion", "v1"},
                         {"metadata", {{"resourceVersion", rv}}},
                         {"items", std::move(list)}});
}

ApiReply StatusApi::ListNamespaces(const ApiRequest& request,
                                   const std::optional<std::string>& name) {
  // A namespace exists while a VM is in it; it is as old as its oldest VM.
  const VmChangeLog::Listing listing = log_.List();
  std::map<std::string, WallTime> namespaces;
  for (const VmObject& vm : listing.items) {
    auto [it, added] = namespaces.emplace(vm.key.ns, vm.created);
    if (!added) it->second = std::min(it->second, vm.created);
  }
  const std::string rv = std::to_string(listing.resource_version);
  const auto object = [&](const std::string& ns, WallTime created) {
    return json{{"kind", "Namespace"},
                {"apiVersion", "v1"},
                {"metadata",
                 {{"name", ns},
                  {"uid", VmUid({ns, ""})},
                  {"resourceVersion", rv},
                  {"creationTimestamp", FormatKubeTime(created)}}},
                {"spec", json::object()},
                {"status", {{"phase", "Active"}}}};
  };
  std::vector<json> items;
  for (const auto& [ns, created] : namespaces) {
    if (!name || ns == *name) items.push_back(object(ns, created));
  }
  if (name && items.empty()) {
    return StatusReply(404, "NotFound", "namespaces \"" + *name + "\" not found",
                       {{"name", *name}, {"kind", "namespaces"}});
  }
  const AcceptTable accept = ParseAccept(request.accept);
  if (accept.table) {
    const WallTime now = clock_.WallNow();
    json rows = json::array();
    for (const json& ns : items) {
      const std::string created = ns["metadata"]["creationTimestamp"];
      rows.push_back({{"cells", {ns["metadata"]["name"], "Active", AgeSince(created, now)}},
                      {"object", PartialObjectMetadata(ns["metadata"], accept.version)}});
    }
    return JsonReply(200,
                     {{"kind", "Table"},
                      {"apiVersion", "meta.k8s.io/" + accept.version},
                      {"metadata", {{"resourceVersion", rv}}},
                      {"columnDefinitions",
                       {Column("Name", "string", "name", "The namespace's name.", 0),
                        Column("Status", "string", "", "Active while a VM is in it.", 0),
                        Column("Age", "string", "", "As old as its oldest VM.", 0)}},
                      {"rows", std::move(rows)}},
                     TableContentType(accept));
  }
  if (name) return JsonReply(200, items.front());
  return JsonReply(200, {{"kind", "NamespaceList"},
                         {"apiVersion", "v1"},
                         {"metadata", {{"resourceVersion", rv}}},
                         {"items", items}});
}

std::string StatusApi::NextWatchLines(WatchState& watch) {
  std::string out;
  if (watch.done) return out;
  const WallTime now = clock_.WallNow();
  const auto line = [&](std::string_view type, const VmObject& vm) {
    json object;
    if (watch.table) {
      object = VmTable({vm}, vm.resource_version, !watch.columns_sent, watch.table_version,
                       watch.include, options_.node_name, now);
      watch.columns_sent = true;
    } else {
      object = VmToJson(vm);
    }
    out += json{{"type", type}, {"object", std::move(object)}}.dump();
    out += '\n';
  };
  const auto selects = [&](const VmObject& vm) {
    return Selects(watch.ns, watch.name, watch.labels, watch.fields, vm);
  };

  if (watch.send_initial) {
    watch.send_initial = false;
    VmChangeLog::Listing listing = log_.List();
    for (const VmObject& vm : listing.items) {
      if (selects(vm)) line("ADDED", vm);
    }
    watch.resource_version = listing.resource_version;
  }
  VmChangeLog::Changes changes = log_.Since(watch.resource_version);
  if (changes.expired) {
    out += json{{"type", "ERROR"},
                {"object",
                 KubeStatus(410, "Expired",
                            "too old resource version: " + std::to_string(watch.resource_version) +
                                " (" + std::to_string(changes.resource_version) + ")")}}
               .dump();
    out += '\n';
    watch.done = true;
    return out;
  }
  for (const VmChangeLog::Change& change : changes.changes) {
    const bool was = change.previous && selects(*change.previous);
    const bool is = change.type != VmChangeLog::ChangeType::kDeleted && selects(change.object);
    if (was && is) {
      line("MODIFIED", change.object);
    } else if (is) {
      line("ADDED", change.object);
    } else if (was) {
      line("DELETED", change.object);
    }
  }
  watch.resource_version = std::max(watch.resource_version, changes.resource_version);
  if (clock_.MonotonicNow() >= watch.deadline) watch.done = true;
  return out;
}

bool SizeHttpThreadPool(size_t threads) {
  try {
    crossplat::threadpool::initialize_with_threads(threads);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

// ---------------------------------------------------------------------------
// The client side.

std::string RenderTable(const json& table, bool wide, bool with_namespace) {
  std::vector<size_t> shown;
  std::vector<std::string> headers;
  if (with_namespace) headers.emplace_back("NAMESPACE");
  const json columns = table.value("columnDefinitions", json::array());
  for (size_t i = 0; i < columns.size(); ++i) {
    if (!wide && columns[i].value("priority", 0) != 0) continue;
    shown.push_back(i);
    std::string name = columns[i].value("name", "");
    for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    headers.push_back(std::move(name));
  }
  std::string header;
  for (const std::string& h : headers) header += (header.empty() ? "" : "\t") + h;
  TabWriter w(6, 3);
  w.Write(header + "\n");
  for (const json& row : table.value("rows", json::array())) {
    std::string line;
    if (with_namespace) {
      const json meta =
          row.contains("object") ? row["object"].value("metadata", json::object()) : json::object();
      line = meta.value("namespace", "");
    }
    const json cells = row.value("cells", json::array());
    bool first = !with_namespace;
    for (size_t i : shown) {
      if (!first) line += '\t';
      first = false;
      line += i < cells.size() ? CellText(cells[i]) : "";
    }
    w.Write(line + "\n");
  }
  return w.Flush();
}

std::string RenderDescribe(const json& vm, const json& events, WallTime now) {
  const json meta = vm.value("metadata", json::object());
  TabWriter w(0, 2);
  w.Write("Name:\t" + meta.value("name", "") + "\n");
  w.Write("Namespace:\t" + meta.value("namespace", "") + "\n");
  const json labels = meta.value("labels", json::object());
  if (labels.empty()) {
    w.Write("Labels:\t<none>\n");
  } else {
    bool first = true;
    for (const auto& [k, v] : labels.items()) {
      w.Write(std::string(first ? "Labels:" : "") + "\t" + k + "=" + ScalarText(v) + "\n");
      first = false;
    }
  }
  w.Write("UID:\t" + meta.value("uid", "") + "\n");
  const std::string created = TimeOr(meta, "creationTimestamp");
  w.Write("Created:\t" + created + " (" + AgeSince(created, now) + " ago)\n");
  w.Write("Generation:\t" + ScalarText(meta.value("generation", json(0))) + "\n");
  w.Write("Resource Version:\t" + meta.value("resourceVersion", "") + "\n");
  w.Write("Spec:\n");
  DescribeContent(w, 1, vm.value("spec", json::object()));
  w.Write("Status:\n");
  const json status = vm.value("status", json::object());
  DescribeContent(w, 1, status, {"conditions"});
  // Each table is aligned on its own, as kubectl flushes before one.
  std::string out = w.Flush();

  const json conditions = status.value("conditions", json::array());
  if (conditions.empty()) {
    w.Write("Conditions:\t<none>\n");
  } else {
    w.Write("Conditions:\n");
    w.Write("  Type\tStatus\tReason\tLast Transition\tMessage\n");
    w.Write("  ----\t------\t------\t---------------\t-------\n");
    for (const json& c : conditions) {
      const std::string since = TimeOr(c, "lastTransitionTime");
      w.Write("  " + c.value("type", "") + "\t" + c.value("status", "") + "\t" +
              c.value("reason", "") + "\t" + AgeSince(since, now) + " ago\t" +
              c.value("message", "") + "\n");
    }
  }

  out += w.Flush();

  const json items = events.value("items", json::array());
  if (items.empty()) {
    w.Write("Events:\t<none>\n");
  } else {
    std::vector<json> sorted(items.begin(), items.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const json& a, const json& b) {
      return TimeOr(a, "lastTimestamp") < TimeOr(b, "lastTimestamp");
    });
    w.Write("Events:\n");
    w.Write("  Type\tReason\tAge\tFrom\tMessage\n");
    w.Write("  ----\t------\t----\t----\t-------\n");
    for (const json& e : sorted) {
      std::string age = AgeSince(TimeOr(e, "firstTimestamp"), now);
      const int64_t count = e.value("count", int64_t{1});
      if (count > 1) {
        age = AgeSince(TimeOr(e, "lastTimestamp"), now) + " (x" + std::to_string(count) + " over " +
              age + ")";
      }
      std::string message = e.value("message", "");
      message = std::string(Trim(message));
      w.Write("  " + e.value("type", "") + "\t" + e.value("reason", "") + "\t" + age + "\t" +
              e.value("source", json::object()).value("component", "") + "\t" + message + "\n");
    }
  }
  return out + w.Flush();
}

}  // namespace vmlet::controller
