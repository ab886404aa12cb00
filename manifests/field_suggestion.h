#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace vmlet::manifests::internal {

// `name` lowercased, with '_' and '-' dropped: "memory_mb" and "MemoryMB"
// both become "memorymb", so spelling conventions do not hide a near miss.
std::string FoldFieldName(std::string_view name);

// The Levenshtein distance between `a` and `b` (insertions, deletions and
// substitutions of one character each count 1).
size_t EditDistance(std::string_view a, std::string_view b);

// The field of `known` an unknown field name was most likely meant to be,
// for "did you mean" hints: the first whose folded name equals the folded
// `unknown`, else the first closest one within an edit distance of 2 of it
// (folded), else "" (no suggestion).
std::string SuggestField(std::string_view unknown, std::span<const std::string_view> known);

}  // namespace vmlet::manifests::internal
