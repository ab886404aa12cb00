#include "tests/support/wait_for.h"

#include <thread>

namespace vmlet::testing {

bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& done) {
  constexpr std::chrono::milliseconds kPollInterval{10};
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollInterval);
  }
}

}  // namespace vmlet::testing
