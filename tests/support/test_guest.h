#pragma once

#include <string>

namespace vmlet::testing {

// The test guest's kernel and initramfs (tests/guest/build-guest, run once
// per test binary, at the first call; it caches under $VMLET_GUEST_DIR, by
// default ~/.cache/vmlet/guest, and needs the network and root the first
// time). `error` is "" when the two paths are set.
struct Guest {
  std::string kernel;
  std::string initramfs;
  std::string error;
};
const Guest& TestGuest();

}  // namespace vmlet::testing
