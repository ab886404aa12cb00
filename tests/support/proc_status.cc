#include "tests/support/proc_status.h"

#include <sstream>

#include "tests/support/files.h"

namespace vmlet::testing {

std::string ProcStatusField(pid_t pid, const std::string& field) {
  std::istringstream in(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":", 0) == 0) {
      const size_t value = line.find_first_not_of(" \t", field.size() + 1);
      return value == std::string::npos ? "" : line.substr(value);
    }
  }
  return "";
}

}  // namespace vmlet::testing
