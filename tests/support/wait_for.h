#pragma once

#include <chrono>
#include <functional>

namespace vmlet::testing {

// Evaluates `done` until it returns true (then true) or `timeout` has passed
// (then false, after one last evaluation at or past the deadline), sleeping
// 10 ms between evaluations. For integration and e2e tests, which wait on a
// condition with a deadline instead of sleeping a fixed time; unit tests do
// not wait on the real clock.
bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& done);

}  // namespace vmlet::testing
