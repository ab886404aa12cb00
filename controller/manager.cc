#include "controller/manager.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <set>
#include <string_view>
#include <vector>

namespace vmlet::controller {

Manager::Manager(Options options, api::Clock& clock, StateStore& store,
                 std::map<std::string, DriverSlot> drivers, Collaborators collaborators,
                 ReconcilerHooks hooks, WorkQueueMetrics queue_metrics, ManagerHooks manager_hooks)
    : options_(std::move(options)),
      clock_(clock),
      store_(store),
      drivers_(drivers),
      desired_(options_.node_name),
      queue_(clock, std::move(collaborators.rate_limiter), std::move(queue_metrics)),
      reconciler_(std::make_unique<Reconciler>(clock_, desired_, store_, std::move(drivers),
                                               options_.reconciler, std::move(collaborators.jitter),
                                               std::move(hooks))),
      watcher_(std::move(collaborators.manifests)),
      hooks_(std::move(manager_hooks)) {}

Manager::~Manager() { Stop(); }

api::Status Manager::Start() {
  if (api::Status s = store_.Init(); !s.ok()) return s.WithContext("state directory");

  // Re-adopt first: every VM with a record is looked at, whatever the
  // manifests say, so nothing that runs is forgotten.
  api::StatusOr<std::vector<api::VmKey>> known = store_.ListVms();
  if (!known.ok()) return known.status().WithContext("state directory");
  for (const api::VmKey& key : *known) queue_.Add(key);
  spdlog::info("event=Starting state_dir={} manifests={} known_vms={} workers={}",
               store_.state_dir(), options_.manifests_dir, known->size(), options_.workers);

  for (auto& [name, slot] : drivers_) {
    if (slot.identity) {
      api::Status s = slot.identity->Start([this](const api::VmKey& key) { queue_.Add(key); });
      if (!s.ok()) return s.WithContext("identity watcher for driver " + name);
    }
    slot.driver->SetChangeListener([this](const std::string& vm_dir) {
      if (auto key = reconciler_->KeyForVmDir(vm_dir)) queue_.Add(*key);
    });
  }

  api::Status watching =
      watcher_->Start([this](const manifests::SourceUpdate& update) { OnSourceUpdate(update); });
  if (!watching.ok()) return watching.WithContext("manifest watcher");

  for (int i = 0; i < std::max(1, options_.workers); ++i) workers_.emplace_back([this] { Work(); });
  resync_ = std::thread([this] { Resync(); });
  return api::Status::Ok();
}

void Manager::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  watcher_->Stop();
  queue_.ShutDown();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  if (resync_.joinable()) resync_.join();
  for (auto& [name, slot] : drivers_) {
    if (slot.identity) slot.identity->Stop();
    slot.driver->SetChangeListener(nullptr);
  }
  spdlog::info("event=Stopped VMMs are left running");
}

void Manager::OnSourceUpdate(const manifests::SourceUpdate& update) {
  if (!update.source_status.ok()) {
    spdlog::error("event=ManifestSourceError {} (nothing changes until it can be read)",
                  update.source_status.message());
  }
  std::vector<manifests::ErrorKind> new_errors;
  {
    // Log and count each error once, when it first appears.
    std::lock_guard lock(mu_);
    std::map<std::string, manifests::ManifestError> now;
    for (const manifests::ManifestError& e : update.errors) {
      std::string text = e.ToString();
      if (!known_errors_.contains(text) && !now.contains(text)) {
        spdlog::warn("event=ManifestInvalid {}", text);
        new_errors.push_back(e.kind);
      }
      now.emplace(std::move(text), e);
    }
    known_errors_ = std::move(now);
  }
  if (hooks_.manifest_error) {
    for (manifests::ErrorKind kind : new_errors) hooks_.manifest_error(kind);
  }
  if (hooks_.manifests) {
    size_t valid = 0;
    for (const auto& [key, vm] : update.snapshot->vms) valid += !update.invalid.contains(key);
    hooks_.manifests(valid, update.invalid.size());
  }
  const bool first_sync = !desired_.synced();
  for (const api::VmKey& key : desired_.Apply(update)) queue_.Add(key);
  if (first_sync && desired_.synced()) {
    // Until now every pass was a no-op: look at everything once more,
    // including VMs whose manifests were deleted while vmlet was down.
    EnqueueAll();
  }
}

void Manager::Work() {
  while (std::optional<api::VmKey> key = queue_.Get()) {
    api::Status outcome;
    std::string_view result_label = "error";
    const api::Clock::MonotonicTime start = clock_.MonotonicNow();
    try {
      api::StatusOr<ReconcileResult> result = reconciler_->Reconcile(*key);
      if (result.ok()) {
        queue_.Forget(*key);
        result_label = "success";
        if (result->requeue_after) {
          if (result->requeue_after->count() == 0) {
            result_label = "requeue";
            queue_.Add(*key);
          } else {
            result_label = "requeue_after";
            queue_.AddAfter(*key, *result->requeue_after);
          }
        }
      } else {
        outcome = result.status();
        spdlog::warn("namespace={} name={} event=ReconcileError {} (retry {})", key->ns, key->name,
                     outcome.ToString(), queue_.NumRequeues(*key) + 1);
        queue_.AddRateLimited(*key);
      }
    } catch (const std::exception& e) {
      // A bug must not take the node down: count it, log it, retry later.
      outcome = api::Status::Internal(std::string("unexpected exception: ") + e.what());
      spdlog::error("namespace={} name={} event=ReconcilePanic {}", key->ns, key->name, e.what());
      queue_.AddRateLimited(*key);
    }
    if (hooks_.reconciled) {
      hooks_.reconciled(result_label,
                        std::chrono::duration<double>(clock_.MonotonicNow() - start).count());
    }
    ++passes_;
    if (pass_observer_) pass_observer_(*key, outcome);
    queue_.Done(*key);
  }
}

void Manager::EnqueueAll() {
  std::set<api::VmKey> keys;
  for (const api::VmKey& key : desired_.Keys()) keys.insert(key);
  if (api::StatusOr<std::vector<api::VmKey>> known = store_.ListVms(); known.ok()) {
    keys.insert(known->begin(), known->end());
  }
  for (const api::VmKey& key : keys) queue_.Add(key);
  if (hooks_.resynced) hooks_.resynced();
}

void Manager::Resync() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    const api::Clock::MonotonicTime next = clock_.MonotonicNow() + options_.resync;
    if (clock_.WaitUntil(cv_, lock, next, [this] { return stopping_; })) break;
    lock.unlock();
    EnqueueAll();
    lock.lock();
  }
}

}  // namespace vmlet::controller
