#include "manifests/quoted_value.h"

namespace vmlet::manifests::internal {

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

}  // namespace vmlet::manifests::internal
