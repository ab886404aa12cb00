#include "manifests/field_suggestion.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace vmlet::manifests::internal {

std::string FoldFieldName(std::string_view name) {
  std::string out;
  for (char c : name) {
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

std::string SuggestField(std::string_view unknown, std::span<const std::string_view> known) {
  std::string folded = FoldFieldName(unknown);
  std::string_view best;
  size_t best_distance = 3;  // suggest only close misses
  for (std::string_view k : known) {
    if (FoldFieldName(k) == folded) return std::string(k);
    size_t d = EditDistance(folded, FoldFieldName(k));
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  return std::string(best);
}

}  // namespace vmlet::manifests::internal
