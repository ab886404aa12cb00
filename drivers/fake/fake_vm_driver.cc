#include "drivers/fake/fake_vm_driver.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "drivers/host/disk_lock.h"
#include "drivers/host/image_access.h"

namespace vmlet::drivers {
namespace {

using nlohmann::json;

constexpr int64_t kNsPerTick = 10'000'000;  // USER_HZ = 100

constexpr std::string_view kInjectedLock =
    "disk image /srv/shared/fake.img is locked by another process (injected)";

api::Status ErrnoStatus(const std::string& what) {
  return api::Status::Unavailable(what + ": " + std::strerror(errno));
}

std::chrono::milliseconds Ms(int64_t ns) {
  return std::chrono::milliseconds((ns + 999'999) / 1'000'000);
}

}  // namespace

// The fake VMMs as a process table: what VmmIdentity reads for this driver.
class FakeVmDriver::Processes final : public ProcFs {
 public:
  explicit Processes(FakeVmDriver& driver) : driver_(driver) {}

  api::StatusOr<std::string> BootId() const override { return driver_.options_.boot_id; }

  api::StatusOr<ProcessInfo> ReadProcess(pid_t pid) const override {
    std::lock_guard lock(driver_.mu_);
    auto it = driver_.by_pid_.find(pid);
    if (it == driver_.by_pid_.end())
      return api::Status::NotFound("no process " + std::to_string(pid));
    Vm* vm = driver_.Find(it->second);
    if (vm == nullptr) return api::Status::NotFound("no process " + std::to_string(pid));
    driver_.Advance(it->second, *vm);
    if (vm->exit_reason) return api::Status::NotFound("no process " + std::to_string(pid));
    return ProcessInfo{
        pid, vm->paused ? 'T' : 'S', vm->start_time_ticks, {"fake-vmm", "--vm-dir", it->second}};
  }

  api::StatusOr<UniqueFd> OpenPidFd(pid_t pid) const override {
    api::StatusOr<ProcessInfo> info = ReadProcess(pid);
    if (!info.ok()) return info.status();
    return UniqueFd();  // no real process: identity re-checks through ReadProcess
  }

 private:
  FakeVmDriver& driver_;
};

FakeVmDriver::FakeVmDriver(const api::Clock& clock, Options options)
    : clock_(clock), options_(std::move(options)), processes_(std::make_unique<Processes>(*this)) {}

FakeVmDriver::~FakeVmDriver() {
  if (fd_ >= 0) ::close(fd_);
}

int64_t FakeVmDriver::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             clock_.MonotonicNow().time_since_epoch())
      .count();
}

api::Status FakeVmDriver::Load() {
  std::lock_guard lock(mu_);
  std::ifstream in(options_.state_file);
  for (std::string line; std::getline(in, line);) ReplayLocked(line);
  return CompactLocked();
}

void FakeVmDriver::ReplayLocked(const std::string& line) {
  json op = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!op.is_object() || !op.contains("op")) return;  // a torn last line
  try {
    const std::string kind = op.at("op");
    if (kind == "count") {
      boots_[{op.at("ns"), op.at("name")}] = op.at("boots");
      return;
    }
    const std::string dir = op.at("dir");
    if (kind == "boot") {
      Vm vm;
      vm.key = {op.at("ns"), op.at("name")};
      vm.pid = op.at("pid");
      vm.start_time_ticks = op.at("start");
      vm.booted_at_ns = op.at("at");
      vm.ip = op.at("ip");
      if (op.contains("paused")) {
        vm.paused = op.at("paused");
        vm.paused_at_ns = op.at("pausedAt");
      }
      vm.paused_total_ns = op.value("pausedTotal", int64_t{0});
      if (op.contains("shutdownAt")) vm.shutdown_at_ns = op.at("shutdownAt").get<int64_t>();
      if (op.contains("exit")) vm.exit_reason = op.at("exit").get<std::string>();
      if (!op.value("replayed", false)) ++boots_[vm.key];
      by_pid_[vm.pid] = dir;
      next_pid_ = std::max(next_pid_, vm.pid + 1);
      vms_[dir] = std::move(vm);
      return;
    }
    Vm* vm = Find(dir);
    if (vm == nullptr) return;
    if (kind == "pause") {
      vm->paused = true;
      vm->paused_at_ns = op.at("at");
    } else if (kind == "resume") {
      vm->paused = false;
      vm->paused_total_ns += op.at("at").get<int64_t>() - vm->paused_at_ns;
    } else if (kind == "shutdown") {
      vm->shutdown_at_ns = op.at("at").get<int64_t>();
    } else if (kind == "exit") {
      vm->exit_reason = op.at("reason").get<std::string>();
    } else if (kind == "cleanup") {
      by_pid_.erase(vm->pid);
      vms_.erase(dir);
    }
  } catch (const json::exception&) {
    return;  // a line from a future version, or damaged: skip it
  }
}

api::Status FakeVmDriver::CompactLocked() {
  // The boot counts, then one line per VM that still exists.
  const std::string temp = options_.state_file + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    for (const auto& [key, count] : boots_) {
      out << json{{"op", "count"}, {"ns", key.ns}, {"name", key.name}, {"boots", count}}.dump()
          << "\n";
    }
    for (const auto& [dir, vm] : vms_) {
      json line = {{"op", "boot"},          {"dir", dir},
                   {"ns", vm.key.ns},       {"name", vm.key.name},
                   {"pid", vm.pid},         {"start", vm.start_time_ticks},
                   {"at", vm.booted_at_ns}, {"ip", vm.ip},
                   {"replayed", true},      {"pausedTotal", vm.paused_total_ns}};
      if (vm.paused) {
        line["paused"] = true;
        line["pausedAt"] = vm.paused_at_ns;
      }
      if (vm.shutdown_at_ns) line["shutdownAt"] = *vm.shutdown_at_ns;
      if (vm.exit_reason) line["exit"] = *vm.exit_reason;
      out << line.dump() << "\n";
    }
    out.flush();
    if (!out) return api::Status::Unavailable("cannot write " + temp);
  }
  if (std::rename(temp.c_str(), options_.state_file.c_str()) != 0) {
    return ErrnoStatus("cannot rename " + temp);
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(options_.state_file.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return ErrnoStatus("cannot open " + options_.state_file);
  return api::Status::Ok();
}

api::Status FakeVmDriver::Append(const std::string& line) {
  if (fd_ < 0) return api::Status::FailedPrecondition("fake driver: Load() was not called");
  std::string data = line + "\n";
  // One write per line: O_APPEND keeps lines whole; a crash can only tear
  // the last one, which Load() skips.
  ssize_t n = ::write(fd_, data.data(), data.size());
  if (n != static_cast<ssize_t>(data.size())) return ErrnoStatus("fake driver: write");
  return api::Status::Ok();
}

FakeVmDriver::Vm* FakeVmDriver::Find(const std::string& dir) {
  auto it = vms_.find(dir);
  return it == vms_.end() ? nullptr : &it->second;
}

void FakeVmDriver::Advance(const std::string& dir, Vm& vm) {
  if (vm.exit_reason) return;
  const int64_t now = NowNs();
  std::string reason;
  if (vm.shutdown_at_ns &&
      now >= *vm.shutdown_at_ns + options_.shutdown_delay.count() * 1'000'000) {
    reason = "poweroff";
  }
  auto faults = faults_.find(vm.key);
  if (reason.empty() && faults != faults_.end() && faults->second.crash_after &&
      now >= vm.booted_at_ns + faults->second.crash_after->count() * 1'000'000) {
    reason = "crashed";
  }
  if (reason.empty()) return;
  vm.exit_reason = reason;
  (void)Append(json{{"op", "exit"}, {"dir", dir}, {"reason", reason}}.dump());
}

void FakeVmDriver::SetFaults(const api::VmKey& key, FakeFaults faults) {
  std::lock_guard lock(mu_);
  faults_[key] = faults;
}

int FakeVmDriver::BootCount(const api::VmKey& key) const {
  std::lock_guard lock(mu_);
  auto it = boots_.find(key);
  return it == boots_.end() ? 0 : it->second;
}

size_t FakeVmDriver::LiveVmms() const {
  std::lock_guard lock(mu_);
  size_t live = 0;
  for (const auto& [dir, vm] : vms_) {
    if (!vm.exit_reason) ++live;
  }
  return live;
}

void FakeVmDriver::CrashNow(const api::VmKey& key) {
  std::lock_guard lock(mu_);
  for (auto& [dir, vm] : vms_) {
    if (vm.key == key && !vm.exit_reason) {
      vm.exit_reason = "crashed";
      (void)Append(json{{"op", "exit"}, {"dir", dir}, {"reason", "crashed"}}.dump());
    }
  }
}

std::vector<api::FieldError> FakeVmDriver::CheckSpec(const api::VmSpec& spec) const {
  std::vector<api::FieldError> errors;
  if (spec.rosetta) errors.push_back({"spec.rosetta", "the fake driver runs on Linux"});
  return errors;
}

api::StatusOr<BootResult> FakeVmDriver::Boot(const api::VmSpec& spec, const std::string& vm_dir,
                                             Deadline) {
  std::lock_guard lock(mu_);
  if (Vm* existing = Find(vm_dir)) {
    Advance(vm_dir, *existing);
    if (!existing->exit_reason) {
      return api::Status::FailedPrecondition("a VMM (pid " + std::to_string(existing->pid) +
                                             ") already runs for " + vm_dir);
    }
    by_pid_.erase(existing->pid);
    vms_.erase(vm_dir);
    (void)Append(json{{"op", "cleanup"}, {"dir", vm_dir}}.dump());
  }
  FakeFaults& faults = faults_[spec.key()];
  if (faults.fail_boots > 0) {
    --faults.fail_boots;
    return api::Status::Unavailable("injected boot failure");
  }
  if (faults.image_not_readable_boot_errors > 0) {
    --faults.image_not_readable_boot_errors;
    return BootResult::Refused(
        {BootRefusal::Reason::kImageNotReadable,
         "spec.kernel " + spec.kernel +
             ": user vmlet-vmm cannot read it (Permission denied) (injected)"});
  }
  if (faults.disk_locked_boot_errors > 0) {
    --faults.disk_locked_boot_errors;
    return BootResult::Refused({BootRefusal::Reason::kDiskLocked, std::string(kInjectedLock)});
  }
  Vm vm;
  vm.key = spec.key();
  vm.pid = next_pid_++;
  vm.booted_at_ns = NowNs();
  vm.start_time_ticks = static_cast<uint64_t>(vm.booted_at_ns / kNsPerTick);
  const uint32_t n = static_cast<uint32_t>(vm.pid);
  vm.ip = "10." + std::to_string(100 + (n >> 16) % 100) + "." + std::to_string((n >> 8) & 0xff) +
          "." + std::to_string(n & 0xff);
  api::Status written = Append(json{
      {"op", "boot"},
      {"dir", vm_dir},
      {"ns", vm.key.ns},
      {"name", vm.key.name},
      {"pid", vm.pid},
      {"start", vm.start_time_ticks},
      {"at", vm.booted_at_ns},
      {"ip", vm.ip}}.dump());
  if (!written.ok()) return written;
  ++boots_[vm.key];
  if (faults.disk_locked_boots > 0) {
    --faults.disk_locked_boots;
    vm.exit_reason = "disklocked";
    if (api::Status s =
            Append(json{{"op", "exit"}, {"dir", vm_dir}, {"reason", "disklocked"}}.dump());
        !s.ok()) {
      return s;
    }
  }
  VmmHandle handle{
      "fake", {vm.pid, vm.start_time_ticks}, options_.boot_id, vm_dir, vm_dir + "/fake.sock"};
  by_pid_[vm.pid] = vm_dir;
  vms_[vm_dir] = std::move(vm);
  return BootResult::Launched(std::move(handle));
}

api::StatusOr<Observation> FakeVmDriver::Observe(const ConfirmedVmm& vmm, Deadline) {
  std::lock_guard lock(mu_);
  const std::string& dir = vmm.handle().vm_dir;
  Vm* vm = Find(dir);
  if (vm == nullptr) return api::Status::NotFound("no fake VMM for " + dir);
  Advance(dir, *vm);
  if (vm->exit_reason) return api::Status::NotFound("the fake VMM for " + dir + " exited");
  Observation obs{api::VmState::Starting(), std::nullopt, std::nullopt};
  const int64_t now = NowNs();
  std::optional<int64_t> next_change_ns;
  auto soonest = [&](int64_t at) {
    if (at > now && (!next_change_ns || at < *next_change_ns)) next_change_ns = at;
  };
  if (vm->paused) {
    obs.state = api::VmState::Paused();
  } else {
    const int64_t ready_at =
        vm->booted_at_ns + vm->paused_total_ns + options_.boot_delay.count() * 1'000'000;
    if (now >= ready_at) {
      obs.state = api::VmState::Ready(vm->ip);
      obs.ready_at = api::Clock::MonotonicTime(std::chrono::nanoseconds(ready_at));
    } else {
      soonest(ready_at);
    }
  }
  if (vm->shutdown_at_ns)
    soonest(*vm->shutdown_at_ns + options_.shutdown_delay.count() * 1'000'000);
  auto faults = faults_.find(vm->key);
  if (faults != faults_.end() && faults->second.crash_after) {
    soonest(vm->booted_at_ns + faults->second.crash_after->count() * 1'000'000);
  }
  if (next_change_ns) obs.recheck_after = Ms(*next_change_ns - now);
  return obs;
}

api::Status FakeVmDriver::Pause(const ConfirmedVmm& vmm, Deadline) {
  std::lock_guard lock(mu_);
  const std::string& dir = vmm.handle().vm_dir;
  Vm* vm = Find(dir);
  if (vm == nullptr || vm->exit_reason) return api::Status::NotFound("no fake VMM for " + dir);
  if (faults_[vm->key].fail_pause) return api::Status::Unavailable("injected pause failure");
  if (vm->paused) return api::Status::Ok();
  vm->paused = true;
  vm->paused_at_ns = NowNs();
  return Append(json{{"op", "pause"}, {"dir", dir}, {"at", vm->paused_at_ns}}.dump());
}

api::Status FakeVmDriver::Resume(const ConfirmedVmm& vmm, Deadline) {
  std::lock_guard lock(mu_);
  const std::string& dir = vmm.handle().vm_dir;
  Vm* vm = Find(dir);
  if (vm == nullptr || vm->exit_reason) return api::Status::NotFound("no fake VMM for " + dir);
  if (!vm->paused) return api::Status::Ok();
  const int64_t now = NowNs();
  vm->paused = false;
  vm->paused_total_ns += now - vm->paused_at_ns;
  return Append(json{{"op", "resume"}, {"dir", dir}, {"at", now}}.dump());
}

api::Status FakeVmDriver::Shutdown(const ConfirmedVmm& vmm, Deadline) {
  std::lock_guard lock(mu_);
  const std::string& dir = vmm.handle().vm_dir;
  Vm* vm = Find(dir);
  if (vm == nullptr || vm->exit_reason) return api::Status::Ok();  // already off
  if (faults_[vm->key].ignore_power_button || vm->shutdown_at_ns) return api::Status::Ok();
  vm->shutdown_at_ns = NowNs();
  api::Status s =
      Append(json{{"op", "shutdown"}, {"dir", dir}, {"at", *vm->shutdown_at_ns}}.dump());
  Advance(dir, *vm);
  return s;
}

api::Status FakeVmDriver::Kill(const ConfirmedVmm& vmm, Deadline) {
  std::lock_guard lock(mu_);
  const std::string& dir = vmm.handle().vm_dir;
  Vm* vm = Find(dir);
  if (vm == nullptr) return api::Status::Ok();
  Advance(dir, *vm);
  if (vm->exit_reason) return api::Status::Ok();
  vm->exit_reason = "killed";
  return Append(json{{"op", "exit"}, {"dir", dir}, {"reason", "killed"}}.dump());
}

VmmExit FakeVmDriver::ExitState(const VmmHandle& handle) {
  std::lock_guard lock(mu_);
  Vm* vm = Find(handle.vm_dir);
  if (vm == nullptr || vm->pid != handle.process.pid) {
    return api::VmState::Failed("the VMM exited (no exit record)");
  }
  Advance(handle.vm_dir, *vm);
  if (!vm->exit_reason) return api::VmState::Failed("the VMM is not the recorded one");
  if (*vm->exit_reason == "poweroff") return api::VmState::Stopped();
  if (*vm->exit_reason == "killed") return api::VmState::Failed("the VMM was killed");
  if (*vm->exit_reason == "disklocked") {
    return BootRefusal{BootRefusal::Reason::kDiskLocked, std::string(kInjectedLock)};
  }
  return api::VmState::Failed("the VMM crashed");
}

api::Status FakeVmDriver::Cleanup(const VmmHandle& handle, Deadline) {
  std::lock_guard lock(mu_);
  Vm* vm = Find(handle.vm_dir);
  if (vm == nullptr || vm->pid != handle.process.pid) return api::Status::Ok();
  if (!vm->exit_reason) {
    return api::Status::FailedPrecondition("the VMM for " + handle.vm_dir + " still runs");
  }
  by_pid_.erase(vm->pid);
  vms_.erase(handle.vm_dir);
  return Append(json{{"op", "cleanup"}, {"dir", handle.vm_dir}}.dump());
}

api::StatusOr<std::optional<VmmHandle>> FakeVmDriver::Rediscover(const std::string& vm_dir) {
  std::lock_guard lock(mu_);
  Vm* vm = Find(vm_dir);
  if (vm == nullptr) return std::optional<VmmHandle>();
  Advance(vm_dir, *vm);
  if (vm->exit_reason) return std::optional<VmmHandle>();
  return std::optional<VmmHandle>(VmmHandle{
      "fake", {vm->pid, vm->start_time_ticks}, options_.boot_id, vm_dir, vm_dir + "/fake.sock"});
}

const ProcFs& FakeVmDriver::proc_fs() const { return *processes_; }

}  // namespace vmlet::drivers
