#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "manifests/manifest_error.h"

namespace vmlet::manifests::internal {

// Checks of a manifest file's text made before yaml-cpp loads it, each for
// something yaml-cpp would forgive, misread or hang on. Each returns the
// first problem found as a kSyntax error for the whole file (field "-") at
// its 1-based line and column in `file`, or nothing when the text passes.

// JSON is loaded by yaml-cpp (for positions), but must first be JSON: this
// catches what YAML would forgive (comments, unquoted strings, trailing
// text), and nesting deeper than 63 levels.
std::optional<ManifestError> CheckJsonSyntax(std::string_view file, std::string_view content);

// YAML allows only printable characters (tab, LF, CR, and printable UTF-8);
// anything else (a NUL, a stray control byte, broken UTF-8) is refused with
// its position rather than handed to yaml-cpp, which misreads some of it.
std::optional<ManifestError> CheckCharacters(std::string_view file, std::string_view content);

// yaml-cpp 0.7's LoadAll never returns on some malformed input (a top-level
// quoted scalar followed by ',': `"a",`): its parser keeps producing empty
// documents at the same position. This pass walks the event stream first
// and turns that into a syntax error at the stuck position.
//
// It also catches what yaml-cpp 0.7 forgives: a quoted scalar that is never
// closed (it runs to the end of the file, so a file cut off mid-write would
// read as complete). Other syntax errors are left to LoadAll, which meets
// them too and reports them.
std::optional<ManifestError> CheckYamlMakesProgress(std::string_view file,
                                                    const std::string& content);

// The 1-based column of the first tab in the leading whitespace of 1-based
// `line` of `text`, if there is one: yaml-cpp blames the ':' after a
// tab-indented key, and this finds the real cause.
std::optional<int> TabIndentation(std::string_view text, int line);

}  // namespace vmlet::manifests::internal
