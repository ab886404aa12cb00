#pragma once

#include <sys/types.h>

#include <string>

namespace vmlet::testing {

// The value of `field` ("VmRSS", "Uid", "CapEff") in /proc/<pid>/status, as
// written there after its leading blanks, or "" when there is no such
// process or line.
std::string ProcStatusField(pid_t pid, const std::string& field);

}  // namespace vmlet::testing
