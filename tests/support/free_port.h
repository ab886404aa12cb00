#pragma once

namespace vmlet::testing {

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for
// port 0), or 0 when none could be had. Another process may take it before
// the caller binds it; tests that start a server on it accept that race.
int FreeLoopbackPort();

}  // namespace vmlet::testing
