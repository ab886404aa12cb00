#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/clock.h"
#include "api/status.h"
#include "controller/desired_cache.h"
#include "controller/manifest_watcher.h"
#include "controller/rate_limiter.h"
#include "controller/reconciler.h"
#include "controller/state_store.h"
#include "controller/work_queue.h"
#include "manifests/directory_source.h"
#include "manifests/manifest_error.h"

namespace vmlet::controller {

// Hooks that feed the manager's own metrics; any of them may be empty. They
// are called on worker, watcher and resync threads, without the manager's
// mutex, and must be cheap.
struct ManagerHooks {
  // A reconcile pass ended: `result` is "success" (nothing more to do now),
  // "requeue" (look again at once), "requeue_after" (look again after a
  // delay) or "error" (retried with backoff; an exception counts here too);
  // `seconds` is its duration on the monotonic clock.
  std::function<void(std::string_view result, double seconds)> reconciled;
  // A manifest error that the previous scan did not report (an error that
  // persists across scans counts once): its kind.
  std::function<void(manifests::ErrorKind kind)> manifest_error;
  // After every scan: VMs whose manifest is valid, and VMs whose manifest is
  // invalid (whether or not they keep a last good spec).
  std::function<void(size_t valid, size_t invalid)> manifests;
  // Every known VM was queued: each periodic resync, and once after the
  // first full scan.
  std::function<void()> resynced;
};

// Runs the controller: the manifest watcher feeds the desired cache, changed
// keys go into the work queue, N workers reconcile them, and a periodic
// resync enqueues every known VM as the safety net (docs/reconcile.md).
//
// Start order: state directory, then every VM that has a record (so VMMs
// that outlived a vmlet restart are re-adopted, never booted twice), then
// the identity exit watchers, then the manifest watcher (the first full
// scan), workers and resync. Stop() reverses it and leaves every VMM running.
//
// Thread-safe: Start() and Stop() from one thread; the rest from any.
class Manager {
 public:
  struct Options {
    std::string manifests_dir;  // for the logs (the watcher reads it)
    std::string node_name;
    int workers = 4;
    std::chrono::nanoseconds resync = std::chrono::seconds(60);
    Reconciler::Options reconciler;
  };

  // What the manager is built on; main.cc names the real ones, tests pass
  // fakes.
  struct Collaborators {
    // The desired state: the manifest directory's first full scan, then
    // every change.
    ManifestWatcherPtr manifests;
    // The work queue's per-key backoff after a failed pass.
    RateLimiterPtr rate_limiter;
    // The crash-loop jitter: a factor in [1.0, 1.1) per call, called from
    // several workers at once.
    std::function<double()> jitter;
  };

  // `drivers` maps driver names to the driver and its identity checker;
  // `hooks`, `queue_metrics` and `manager_hooks` feed metrics. The clock,
  // store and drivers outlive the manager. REQUIRES: every collaborator set.
  Manager(Options options, api::Clock& clock, StateStore& store,
          std::map<std::string, DriverSlot> drivers, Collaborators collaborators,
          ReconcilerHooks hooks, WorkQueueMetrics queue_metrics = {},
          ManagerHooks manager_hooks = {});
  ~Manager();

  api::Status Start();
  // Stops watching and reconciling; waits for workers to finish their current
  // pass. VMMs keep running.
  void Stop();

  // True once the first full scan of the manifest directory was applied.
  bool synced() const { return desired_.synced(); }
  const DesiredCache& desired() const { return desired_; }
  Reconciler& reconciler() { return *reconciler_; }
  WorkQueue& queue() { return queue_; }
  // Reconcile passes completed (successful or not), for tests and benchmarks.
  uint64_t passes() const { return passes_.load(); }
  // Called after every reconcile pass, on the worker's thread (optional).
  void SetPassObserver(std::function<void(const api::VmKey&, const api::Status&)> observer) {
    pass_observer_ = std::move(observer);
  }

 private:
  void OnSourceUpdate(const manifests::SourceUpdate& update);
  void Work();
  void Resync();
  void EnqueueAll();

  const Options options_;
  api::Clock& clock_;
  StateStore& store_;
  std::map<std::string, DriverSlot> drivers_;
  DesiredCache desired_;
  WorkQueue queue_;
  std::unique_ptr<Reconciler> reconciler_;
  ManifestWatcherPtr watcher_;
  std::vector<std::thread> workers_;
  std::thread resync_;
  std::atomic<uint64_t> passes_{0};
  std::function<void(const api::VmKey&, const api::Status&)> pass_observer_;
  const ManagerHooks hooks_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;                                         // guarded by mu_
  std::map<std::string, manifests::ManifestError> known_errors_;  // guarded by mu_ (by ToString)
};

}  // namespace vmlet::controller
