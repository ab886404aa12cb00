#pragma once

#include <string>
#include <string_view>

namespace vmlet::manifests::internal {

// `text` as an error message quotes it: in double quotes, with '"' and '\'
// escaped by '\', control characters shown as '?', and cut after 80
// characters (marked by "..."), so a message stays one readable line.
std::string Quoted(std::string_view text);

}  // namespace vmlet::manifests::internal
