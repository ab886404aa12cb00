#pragma once

#include <chrono>
#include <string>

#include "api/clock.h"
#include "controller/desired_cache.h"
#include "controller/vm_runtime.h"
#include "controller/vm_status.h"

namespace vmlet::controller {

// What status.json says of a VM, derived from what the reconciler knows of
// it (`rt`: its record, the phase it observed, its crash loop and refused
// boots) and its desired state. Starts from the status last written, so a
// condition keeps its lastTransitionTime while its value stays. Pure: `wall`
// stamps the conditions that change, `now` measures the crash-loop backoff.
//
// Conditions, in this order: Ready, Paused, ManifestValid, CrashLoopBackOff,
// Converged (docs/reconcile.md).
VmStatus DeriveStatus(const VmRuntime& rt, const DesiredEntry& desired, WallTime wall,
                      api::Clock::MonotonicTime now);

// How status and events word a delay: "850ms", "12s", "3m20s".
std::string DescribeDelay(std::chrono::nanoseconds d);

}  // namespace vmlet::controller
