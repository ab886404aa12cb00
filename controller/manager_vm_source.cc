#include "controller/manager_vm_source.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <set>

#include "controller/manager.h"

namespace vmlet::controller {

using std::chrono::duration_cast;
using std::chrono::nanoseconds;
using std::chrono::seconds;

api::StatusOr<std::vector<api::VmKey>> ManagerVmSource::Keys() const {
  std::set<api::VmKey> keys;
  for (const api::VmKey& key : manager_.desired().Keys()) keys.insert(key);
  api::StatusOr<std::vector<api::VmKey>> stored = store_.ListVms();
  if (!stored.ok()) return stored.status();
  keys.insert(stored->begin(), stored->end());
  return std::vector<api::VmKey>(keys.begin(), keys.end());
}

VmObservation ManagerVmSource::Observe(const api::VmKey& key) const {
  VmObservation o;
  o.desired = manager_.desired().Get(key).vm;
  o.status = manager_.reconciler().StatusOf(key);
  // Before the reconciler's first look after a restart, status.json is what
  // it last wrote.
  if (!o.status && store_.VmDirExists(key)) {
    o.status = store_.LoadStatus(key);
  }
  return o;
}

std::optional<WallTime> ManagerVmSource::CreatedAt(const api::VmKey& key) const {
  struct statx st {};
  if (::statx(AT_FDCWD, store_.VmDir(key).c_str(), 0, STATX_BTIME, &st) != 0 ||
      !(st.stx_mask & STATX_BTIME)) {
    return std::nullopt;
  }
  return WallTime(duration_cast<WallTime::duration>(seconds(st.stx_btime.tv_sec) +
                                                    nanoseconds(st.stx_btime.tv_nsec)));
}

std::vector<Event> ManagerVmSource::RecentEvents(const api::VmKey& key, size_t max) const {
  return store_.RecentEvents(key, max);
}

bool ManagerVmSource::Synced() const { return manager_.synced(); }

}  // namespace vmlet::controller
