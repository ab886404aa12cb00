#pragma once

#include <ostream>

namespace vmlet::controller {

// vmlet's command line (CLI11):
//   vmlet validate [--image-root DIR]... [--default-driver NAME] PATH...
//       Parses and validates every manifest under each PATH (files or
//       directories, recursively) exactly as `vmlet run` would. Prints one
//       line per error, "FILE:LINE:COL: FIELD: REASON", on `err`, and one
//       line per valid VM on `out`. Exit 0 when everything is valid, 1
//       otherwise.
//   vmlet version (or --version)
//       Prints "vmlet <version>".
// Returns the process exit code: 0 success, 1 invalid manifests, 2 usage error.
int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace vmlet::controller
