#pragma once

// The sample records, statuses and events the state tests share (state_json_test.cc,
// state_store_test.cc).

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "controller/state_store.h"
#include "manifests/directory_source.h"

namespace vmlet::controller::state_samples {

using namespace std::chrono_literals;

// 2026-11-28T00:00:00Z, where FakeClock's wall time starts.
inline const WallTime kT0 = WallTime(std::chrono::seconds(1795824000));

inline drivers::VmmHandle SampleVmm() {
  drivers::VmmHandle vmm;
  vmm.driver = "qemu";
  vmm.process = {.pid = 4242, .start_time_ticks = 123456789};
  vmm.boot_id = "0b5c7e8a-6f0d-4d38-9f1e-2a3b4c5d6e7f";
  vmm.vm_dir = "/var/lib/vmlet/vms/default/web";
  vmm.socket_path = "/var/lib/vmlet/vms/default/web/qmp.sock";
  return vmm;
}

inline VmRecord FullRecord() {
  VmRecord r;
  r.driver = "qemu";
  r.vmm = SampleVmm();
  r.spec_hash = "3f2a9c1d00b1e2f4";
  r.boot_requested_at = kT0 + 1500ms;
  r.ready_at = kT0 + 12250ms;
  r.stop_requested = true;
  r.stop_requested_at = kT0 + 60s;
  r.stop_grace_seconds = 45;
  r.restart_count = 2;
  r.consecutive_failures = 1;
  r.last_exit_phase = api::VmState::Phase::kFailed;
  r.last_exit_reason = "VMM exited with status 1";
  return r;
}

inline VmRecord MinimalRecord() {
  VmRecord r;
  r.driver = "fake";
  r.spec_hash = "abc";
  return r;
}

inline VmStatus FullStatus() {
  VmStatus s;
  s.phase = "Ready";
  s.ip = "10.0.0.7";
  s.reason = "";
  s.desired_state = "Running";
  s.observed_generation = "3f2a9c1d00b1e2f4";
  s.conditions.push_back({"Ready", "True", "GuestReady", "guest answered", kT0 + 12250ms});
  s.conditions.push_back({"ManifestValid", "True", "Valid", "", kT0});
  s.restart_count = 2;
  s.last_boot_duration_seconds = 10.75;
  s.vmm = VmStatus::Vmm{.driver = "qemu", .pid = 4242, .start_time_ticks = 123456789};
  return s;
}

inline Event MakeEvent(WallTime time, std::string reason, std::string message = "") {
  return Event{
      .time = time, .type = "Normal", .reason = std::move(reason), .message = std::move(message)};
}

// A desired VM of the fake driver, as the read API shows it.
inline std::shared_ptr<const manifests::DesiredVm> Desired(
    const api::VmKey& key, std::map<std::string, std::string> labels = {},
    api::DesiredState state = api::DesiredState::kRunning) {
  auto vm = std::make_shared<manifests::DesiredVm>();
  vm->spec.name = key.name;
  vm->spec.ns = key.ns;
  vm->spec.labels = std::move(labels);
  vm->spec.desired_state = state;
  vm->spec.driver = "fake";
  vm->spec.kernel = "/images/vmlinuz";
  vm->spec.cpus = 2;
  vm->spec.memory_mb = 256;
  vm->spec_hash = "0123456789abcdef";
  return vm;
}

// A status in `phase`, as the read API shows it.
inline VmStatus Status(const std::string& phase, const std::string& ip = "",
                       const std::string& desired = "Running") {
  VmStatus s;
  s.phase = phase;
  s.ip = ip;
  s.desired_state = desired;
  s.observed_generation = "0123456789abcdef";
  s.restart_count = 1;
  return s;
}

}  // namespace vmlet::controller::state_samples
