#include "controller/cli_render.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <set>
#include <vector>

#include "controller/api_query.h"
#include "controller/kube_objects.h"
#include "controller/tab_writer.h"

namespace vmlet::controller {
namespace {

using nlohmann::json;

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

// kubectl describe's smartLabelFor: camelCase words, title-cased, common
// acronyms upper-cased ("memoryMb" -> "Memory Mb", "uid" -> "UID").
std::string SmartLabel(std::string_view field) {
  std::vector<std::string> words;
  std::string word;
  for (const char c : field) {
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

}  // namespace

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
