#include "tests/support/test_guest.h"

#include <optional>
#include <vector>

#include "tests/support/vmlet_process.h"

namespace vmlet::testing {

const Guest& TestGuest() {
  static const Guest guest = [] {
    const std::string cmd = std::string(VMLET_SOURCE_DIR) + "/tests/guest/build-guest";
    const std::optional<std::vector<std::string>> lines = CommandOutputLines(cmd);
    if (!lines) return Guest{"", "", cmd + " failed (its own message is above)"};
    if (lines->size() != 2) {
      return Guest{"", "",
                   cmd + " printed " + std::to_string(lines->size()) +
                       " lines, not the kernel's and the initramfs' paths"};
    }
    return Guest{(*lines)[0], (*lines)[1], ""};
  }();
  return guest;
}

}  // namespace vmlet::testing
