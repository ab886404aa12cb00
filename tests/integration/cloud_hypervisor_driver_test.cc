// CloudHypervisorDriver, the real one (libcurl, posix_spawn, /proc, pidfds,
// inotify, the real clock), driving fake-cloud-hypervisor processes through
// the whole VM lifecycle and through every way a call can fail. Every
// request the driver sends is checked against CH's OpenAPI spec by the fake
// (--fake-request-log); TearDown asserts that all of them were valid.
//
// VMMs are started by the driver under test and ended through it (Kill,
// then Cleanup to reap), or by the pid recorded in their handle. Waits poll
// a condition until a deadline; nothing sleeps a fixed time as an assertion.
// Each test has its own temporary directory, removed in TearDown.

#include "drivers/cloud_hypervisor/cloud_hypervisor_driver.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "drivers/cloud_hypervisor/ch_api_client.h"
#include "drivers/cloud_hypervisor/ch_api_transport.h"
#include "drivers/cloud_hypervisor/ch_vm_config.h"
#include "drivers/host/linux_proc_fs.h"
#include "drivers/host/process_launcher.h"
#include "drivers/host/real_clock.h"
#include "drivers/unique_fd.h"
#include "drivers/vmm_identity.h"
#include "tests/fakes/fake_cloud_hypervisor/openapi_validator.h"
#include "tests/support/files.h"
#include "tests/support/temp_dir.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/wait_for.h"

#ifndef FAKE_CH_BINARY
#error "FAKE_CH_BINARY must name the fake-cloud-hypervisor binary (set by CMake)"
#endif
#ifndef FAKE_CH_OPENAPI
#error "FAKE_CH_OPENAPI must name Cloud Hypervisor's OpenAPI spec (set by CMake)"
#endif

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Code = api::Status::Code;
using Phase = api::VmState::Phase;
using Verdict = VmmIdentity::Verdict;
using vmlet::testing::ReadFile;
using vmlet::testing::WaitFor;

constexpr milliseconds kWait{10000};
const api::VmKey kKey{"ns", "vm-1"};

bool Exited(int pidfd) {
  pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
  return ::poll(&pfd, 1, 0) > 0;
}

// Where the booting tests' images are (the driver checks that the VMM can
// open them before it launches it; the stand-in reads none of them).
std::string g_images = "/img";

api::VmSpec MinimalSpec() {
  api::VmSpec spec;
  spec.ns = kKey.ns;
  spec.name = kKey.name;
  spec.driver = "cloud-hypervisor";
  spec.kernel = g_images + "/vmlinuz";
  spec.cpus = 2;
  spec.memory_mb = 256;
  return spec;
}

class CloudHypervisorDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vm_dir_ = dir_ + "/vms/ns/vm-1";
    fs::create_directories(vm_dir_);
    g_images = dir_ + "/img";
    fs::create_directories(g_images);
    for (const char* image : {"vmlinuz", "root.raw", "seed.iso"}) {
      std::ofstream(g_images + "/" + image) << image;
    }
    request_log_ = dir_ + "/requests.jsonl";
  }

  void TearDown() override {
    // End every VMM this test booted, through the driver, and reap it.
    for (const VmmHandle& handle : handles_) {
      VmmIdentity::Check check = identity_.Confirm(kKey, handle);
      if (check.vmm && driver_) {
        EXPECT_TRUE(driver_->Kill(*check.vmm, In(milliseconds(5000))).ok());
      }
      identity_.Forget(kKey);
      if (driver_) {
        EXPECT_TRUE(driver_->Cleanup(handle, In(milliseconds(1000))).ok());
      }
    }
    if (driver_) driver_->Stop();
    driver_.reset();
    ExpectEveryRequestValid();
  }

  Deadline In(milliseconds timeout) const { return clock_.MonotonicNow() + timeout; }

  // A started driver whose VMMs are fake-cloud-hypervisor with `fake_flags`
  // (and the request log).
  void MakeDriver(const std::vector<std::string>& fake_flags = {},
                  CloudHypervisorOptions options = {}) {
    options.cloud_hypervisor_binary = FAKE_CH_BINARY;
    options.extra_args = {"--fake-request-log", request_log_};
    options.extra_args.insert(options.extra_args.end(), fake_flags.begin(), fake_flags.end());
    driver_ = std::make_unique<CloudHypervisorDriver>(clock_, proc_fs_, launcher_, options);
    ASSERT_TRUE(driver_->Start().ok());
  }

  // Boots `spec` in vm_dir_ and keeps the handle for TearDown.
  api::StatusOr<VmmHandle> Boot(const api::VmSpec& spec = MinimalSpec(),
                                milliseconds timeout = kWait) {
    api::StatusOr<BootResult> booted = driver_->Boot(spec, vm_dir_, In(timeout));
    if (!booted.ok()) return booted.status();
    if (const BootRefusal* refused = booted->refusal()) {
      return api::Status::Unavailable("boot refused: " + std::string(ReasonName(refused->reason)) +
                                      ": " + refused->detail);
    }
    handles_.push_back(*booted->handle());
    return *booted->handle();
  }

  // The ConfirmedVmm for `handle`; fails the test when it is not confirmed.
  ConfirmedVmm Confirm(const VmmHandle& handle) {
    VmmIdentity::Check check = identity_.Confirm(kKey, handle);
    EXPECT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
    if (!check.vmm) throw std::runtime_error("not confirmed: " + check.reason);
    return *std::move(check.vmm);
  }

  // Waits until Observe() reports `phase`; the last observation.
  api::StatusOr<Observation> ObserveUntil(const ConfirmedVmm& vmm, Phase phase) {
    api::StatusOr<Observation> last = api::Status::Internal("never observed");
    WaitFor(kWait, [&] {
      last = driver_->Observe(vmm, In(milliseconds(2000)));
      return last.ok() && last->state.phase() == phase;
    });
    return last;
  }

  std::vector<json> RequestLog() const {
    std::vector<json> entries;
    std::istringstream lines(ReadFile(request_log_));
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty()) entries.push_back(json::parse(line));
    }
    return entries;
  }

  // "PUT /api/v1/vm.boot" for each request logged, in order.
  std::vector<std::string> Requests() const {
    std::vector<std::string> requests;
    for (const json& entry : RequestLog()) {
      requests.push_back(entry.value("method", "") + " " + entry.value("path", ""));
    }
    return requests;
  }

  void ExpectEveryRequestValid() const {
    for (const json& entry : RequestLog()) {
      EXPECT_EQ(entry.value("valid", false), true) << entry.dump();
      EXPECT_FALSE(entry.contains("warnings")) << "fields CH ignores: " << entry.dump();
    }
  }

  RealClock clock_;
  LinuxProcFs proc_fs_;
  PosixProcessLauncher launcher_;
  VmmIdentity identity_{proc_fs_};
  std::unique_ptr<CloudHypervisorDriver> driver_;
  std::vector<VmmHandle> handles_;
  // Short: the API socket path must fit in sockaddr_un.
  const testing::TempDir temp_dir_{"chd"};
  const std::string dir_ = temp_dir_.path();
  std::string vm_dir_;
  std::string request_log_;
};

// --- The lifecycle ---------------------------------------------------------

TEST_F(CloudHypervisorDriverTest, BootReturnsAHandleThatPassesTheIdentityCheckAtOnce) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_EQ(handle->driver, "cloud-hypervisor");
  EXPECT_EQ(handle->vm_dir, vm_dir_);
  EXPECT_EQ(handle->socket_path, vm_dir_ + "/ch.sock");
  EXPECT_EQ(handle->boot_id, *proc_fs_.BootId());
  api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(handle->process.pid);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->start_time_ticks, handle->process.start_time_ticks);
  EXPECT_EQ(identity_.Confirm(kKey, *handle).verdict, Verdict::kConfirmed);
  EXPECT_TRUE(fs::exists(vm_dir_ + "/events.json"));
  EXPECT_TRUE(fs::exists(vm_dir_ + "/vmm.log"));
}

TEST_F(CloudHypervisorDriverTest, BootSendsPingCreateAndBootWithTheSpecsVmConfig) {
  MakeDriver();
  api::VmSpec spec = MinimalSpec();
  spec.root_disk = g_images + "/root.raw";
  spec.seed_iso = g_images + "/seed.iso";
  spec.networks = {{"tap-vm1", "52:54:00:12:34:56"}};
  spec.vsock = true;
  ASSERT_TRUE(Boot(spec).ok());
  const std::vector<std::string> requests = Requests();
  ASSERT_GE(requests.size(), 3u);
  EXPECT_EQ(requests.front(), "GET /api/v1/vmm.ping");
  EXPECT_THAT(std::vector<std::string>(requests.end() - 2, requests.end()),
              ::testing::ElementsAre("PUT /api/v1/vm.create", "PUT /api/v1/vm.boot"));
  api::VmSpec with_serial = spec;
  with_serial.serial_log = vm_dir_ + "/serial.log";
  EXPECT_EQ(RequestLog()[requests.size() - 2]["body"], ChVmConfig(with_serial, vm_dir_));
}

TEST_F(CloudHypervisorDriverTest, ObserveIsStartingUntilTheMarkerThenReadyWithTheFakesIp) {
  MakeDriver({"--fake-boot-delay-ms", "300", "--fake-ready-ip", "192.0.2.7"});
  std::atomic<int> notified{0};
  driver_->SetChangeListener([&](const std::string& vm_dir) {
    if (vm_dir == vm_dir_) ++notified;
  });
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);

  api::StatusOr<Observation> first = driver_->Observe(vmm, In(milliseconds(2000)));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->state, api::VmState::Starting());

  ASSERT_TRUE(WaitFor(kWait, [&] { return notified.load() > 0; }))
      << "the listener was never called";
  api::StatusOr<Observation> ready = driver_->Observe(vmm, In(milliseconds(2000)));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->state, api::VmState::Ready("192.0.2.7"));
  EXPECT_TRUE(ready->ready_at.has_value());
  EXPECT_EQ(ready->recheck_after, std::nullopt);
}

TEST_F(CloudHypervisorDriverTest, PauseAndResumeAreIdempotentAndVmInfoAgrees) {
  MakeDriver({"--fake-boot-delay-ms", "0"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  CurlChApiTransport transport(clock_, handle->socket_path);
  ChApiClient api(transport);

  ASSERT_TRUE(driver_->Pause(vmm, In(kWait)).ok());
  EXPECT_EQ(api.Info(In(kWait))->state, "Paused");
  EXPECT_EQ(driver_->Observe(vmm, In(kWait))->state, api::VmState::Paused());
  EXPECT_TRUE(driver_->Pause(vmm, In(kWait)).ok()) << "pausing a paused VM";
  EXPECT_EQ(api.Info(In(kWait))->state, "Paused");

  ASSERT_TRUE(driver_->Resume(vmm, In(kWait)).ok());
  EXPECT_EQ(api.Info(In(kWait))->state, "Running");
  EXPECT_TRUE(driver_->Resume(vmm, In(kWait)).ok()) << "resuming a running VM";
  api::StatusOr<Observation> after = ObserveUntil(vmm, Phase::kReady);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->state, api::VmState::Ready("10.0.2.15"));
}

TEST_F(CloudHypervisorDriverTest, PowerButtonEndsTheVmmWithStatus0AndExitStateIsStopped) {
  MakeDriver({"--fake-boot-delay-ms", "0"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_TRUE(ObserveUntil(vmm, Phase::kReady).ok());

  ASSERT_TRUE(driver_->Shutdown(vmm, In(kWait)).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); })) << "the guest never powered off";
  EXPECT_EQ(driver_->ExitState(*handle), api::VmState::Stopped());
  EXPECT_THAT(ReadFile(vm_dir_ + "/events.json"), HasSubstr("\"shutdown\""));
  EXPECT_NE(identity_.Confirm(kKey, *handle).verdict, Verdict::kConfirmed);
}

TEST_F(CloudHypervisorDriverTest, AnAdoptedVmmThatPoweredOffIsStoppedByItsEvents) {
  MakeDriver({"--fake-boot-delay-ms", "0"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_TRUE(driver_->Shutdown(vmm, In(kWait)).ok());
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));
  // A vmlet restarted meanwhile: not the parent, it has only the files.
  CloudHypervisorDriver restarted(clock_, proc_fs_, launcher_, driver_->options());
  EXPECT_EQ(restarted.ExitState(*handle), api::VmState::Stopped());
}

TEST_F(CloudHypervisorDriverTest, BootsAgainAfterAPowerOffWithFreshLogsAndTheOldOnesKept) {
  MakeDriver({"--fake-boot-delay-ms", "0"});
  api::StatusOr<VmmHandle> first = Boot();
  ASSERT_TRUE(first.ok()) << first.status();
  {
    const ConfirmedVmm vmm = Confirm(*first);
    ASSERT_TRUE(ObserveUntil(vmm, Phase::kReady).ok());
    ASSERT_TRUE(driver_->Shutdown(vmm, In(kWait)).ok());
    ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));
  }
  ASSERT_EQ(driver_->ExitState(*first), api::VmState::Stopped());
  ASSERT_TRUE(driver_->Cleanup(*first, In(kWait)).ok());
  identity_.Forget(kKey);

  api::StatusOr<VmmHandle> second = Boot();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_NE(second->process, first->process);
  EXPECT_THAT(ReadFile(vm_dir_ + "/serial.log.1"), HasSubstr("reboot: Power down"));
  EXPECT_THAT(ReadFile(vm_dir_ + "/events.json.1"), HasSubstr("\"shutdown\""));
  const ConfirmedVmm vmm = Confirm(*second);
  api::StatusOr<Observation> ready = ObserveUntil(vmm, Phase::kReady);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->state, api::VmState::Ready("10.0.2.15"));
  EXPECT_THAT(ReadFile(vm_dir_ + "/serial.log"), ::testing::Not(HasSubstr("Power down")));
}

TEST_F(CloudHypervisorDriverTest, BootRemovesASocketFileACrashedVmmLeftBehind) {
  // CH up to v52 cannot bind over a leftover socket file.
  MakeDriver({"--fake-legacy-socket"});
  UniqueFd stale(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, (vm_dir_ + "/ch.sock").c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(stale.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
}

TEST_F(CloudHypervisorDriverTest, KillStopsTheVmmThroughItsApiAndIsIdempotent) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_TRUE(driver_->Kill(vmm, In(kWait)).ok());
  EXPECT_TRUE(Exited(vmm.pidfd()));
  EXPECT_THAT(Requests(),
              ::testing::IsSupersetOf({"PUT /api/v1/vm.shutdown", "PUT /api/v1/vmm.shutdown"}));
  EXPECT_TRUE(driver_->Kill(vmm, In(kWait)).ok()) << "killing a gone VMM";
  EXPECT_EQ(driver_->ExitState(*handle), api::VmState::Stopped());
}

TEST_F(CloudHypervisorDriverTest, KillFallsBackToSigkillWhenTheApiDoesNotAnswer) {
  CloudHypervisorOptions options;
  options.api_shutdown_timeout = milliseconds(300);
  MakeDriver({"--fake-delay", "vm.shutdown=60000"}, options);
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  const auto started = clock_.MonotonicNow();
  ASSERT_TRUE(driver_->Kill(vmm, In(kWait)).ok());
  EXPECT_TRUE(Exited(vmm.pidfd()));
  EXPECT_LT(clock_.MonotonicNow() - started, milliseconds(5000));
}

TEST_F(CloudHypervisorDriverTest, SigkillFromOutsideIsAFailureNamingTheSignal) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_EQ(::kill(handle->process.pid, SIGKILL), 0);  // by the recorded pid
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));
  const api::VmState exit = driver_->ExitState(*handle).state();
  EXPECT_EQ(exit.phase(), Phase::kFailed);
  EXPECT_THAT(std::string(exit.reason()), HasSubstr("killed by signal 9 (SIGKILL)"));
}

TEST_F(CloudHypervisorDriverTest, AnAdoptedVmmKilledFromOutsideIsAFailure) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_EQ(::kill(handle->process.pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));
  CloudHypervisorDriver restarted(clock_, proc_fs_, launcher_, driver_->options());
  const api::VmState exit = restarted.ExitState(*handle).state();
  EXPECT_EQ(exit.phase(), Phase::kFailed);
  EXPECT_THAT(std::string(exit.reason()), HasSubstr("without a shutdown event"));
}

TEST_F(CloudHypervisorDriverTest, CleanupRemovesTheSocketAKilledVmmLeftAndIsIdempotent) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_EQ(::kill(handle->process.pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));
  ASSERT_TRUE(fs::exists(handle->socket_path)) << "a killed CH leaves its socket";
  ASSERT_TRUE(driver_->Cleanup(*handle, In(kWait)).ok());
  EXPECT_FALSE(fs::exists(handle->socket_path));
  EXPECT_TRUE(driver_->Cleanup(*handle, In(kWait)).ok());
  // Reaped: /proc no longer shows even a zombie.
  EXPECT_TRUE(proc_fs_.ReadProcess(handle->process.pid).status().IsNotFound());
}

TEST_F(CloudHypervisorDriverTest, RediscoverFindsTheRunningVmmAndNothingElsewhere) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  api::StatusOr<std::optional<VmmHandle>> found = driver_->Rediscover(vm_dir_);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, *handle);

  fs::create_directories(dir_ + "/vms/ns/vm-10");
  api::StatusOr<std::optional<VmmHandle>> none = driver_->Rediscover(dir_ + "/vms/ns/vm-10");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value()) << "vm-1's VMM is not vm-10's";
}

TEST_F(CloudHypervisorDriverTest, RediscoverRefusesToPickBetweenTwoVmmsForOneVm) {
  MakeDriver();
  ASSERT_TRUE(Boot().ok());
  // A second fake CH whose command line also carries vm-1's socket argument.
  testing::VmletProcess second;
  ASSERT_EQ(second.Start(FAKE_CH_BINARY,
                         {"--api-socket", "path=" + dir_ + "/other.sock", "--fake-ready-ip",
                          "path=" + vm_dir_ + "/ch.sock"},
                         dir_ + "/second.log"),
            "");
  ASSERT_TRUE(WaitFor(kWait, [&] {
    api::StatusOr<ProcessInfo> info = proc_fs_.ReadProcess(second.pid());
    return info.ok() && info->cmdline.size() == 5;
  }));
  api::StatusOr<std::optional<VmmHandle>> found = driver_->Rediscover(vm_dir_);
  EXPECT_EQ(found.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(found.status().message(), HasSubstr("more than one"));
  second.KillAndReap();
}

TEST_F(CloudHypervisorDriverTest, ManyCallsShareOneConnection) {
  // The fake answers a connection beyond the 10th with 503: a driver that
  // left connections open would hit it.
  MakeDriver({"--fake-boot-delay-ms", "0", "--fake-overflow", "reject"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  for (int i = 0; i < 30; ++i) {
    api::StatusOr<Observation> o = driver_->Observe(vmm, In(kWait));
    ASSERT_TRUE(o.ok()) << "call " << i << ": " << o.status();
  }
}

// --- Errors ------------------------------------------------------------------

// The driver keeps its connection to a VMM open, so these start from a
// driver that has none yet: a vmlet that restarted.
TEST_F(CloudHypervisorDriverTest, AMissingSocketIsUnavailable) {
  MakeDriver({"--fake-boot-delay-ms", "60000"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_EQ(::unlink(handle->socket_path.c_str()), 0);
  CloudHypervisorDriver restarted(clock_, proc_fs_, launcher_, driver_->options());
  const api::Status s = restarted.Pause(vmm, In(kWait));
  EXPECT_EQ(s.code(), Code::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr(handle->socket_path));
  EXPECT_THAT(s.message(), HasSubstr("No such file or directory"));
  // Before the marker, an API that does not answer is still Starting.
  api::StatusOr<Observation> o = restarted.Observe(vmm, In(kWait));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->state, api::VmState::Starting());
  EXPECT_TRUE(o->recheck_after.has_value());
}

TEST_F(CloudHypervisorDriverTest, ASocketNobodyListensOnIsUnavailable) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_EQ(::unlink(handle->socket_path.c_str()), 0);
  // A bound socket that never listens: connect() is refused.
  UniqueFd dead(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, handle->socket_path.c_str(), sizeof(address.sun_path) - 1);
  ASSERT_EQ(::bind(dead.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);

  CloudHypervisorDriver restarted(clock_, proc_fs_, launcher_, driver_->options());
  const api::Status s = restarted.Resume(vmm, In(kWait));
  EXPECT_EQ(s.code(), Code::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("Connection refused"));
}

TEST_F(CloudHypervisorDriverTest, A500WithAJsonErrorBodyIsFailedPreconditionWithChsMessage) {
  MakeDriver({"--fake-fail", "vm.pause=500"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const api::Status s = driver_->Pause(Confirm(*handle), In(kWait));
  EXPECT_EQ(s.code(), Code::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("vm.pause: fake-cloud-hypervisor: injected failure "
                                     "(--fake-fail vm.pause=500) (HTTP 500)"));
}

TEST_F(CloudHypervisorDriverTest, ACallThatTimesOutIsDeadlineExceededByItsDeadline) {
  MakeDriver({"--fake-delay", "vm.pause=3000:1"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  const auto started = clock_.MonotonicNow();
  const api::Status s = driver_->Pause(vmm, In(milliseconds(300)));
  EXPECT_EQ(s.code(), Code::kDeadlineExceeded) << s;
  EXPECT_LT(clock_.MonotonicNow() - started, milliseconds(2000));
  // Once the fake is done being slow, the next call gets through.
  EXPECT_TRUE(WaitFor(kWait, [&] { return driver_->Observe(vmm, In(kWait)).ok(); }));
}

TEST_F(CloudHypervisorDriverTest, CallsToADeadVmmFailRetryablyAndKillIsOk) {
  MakeDriver({"--fake-boot-delay-ms", "0"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_TRUE(ObserveUntil(vmm, Phase::kReady).ok());
  ASSERT_EQ(::kill(handle->process.pid, SIGKILL), 0);
  ASSERT_TRUE(WaitFor(kWait, [&] { return Exited(vmm.pidfd()); }));

  EXPECT_EQ(driver_->Pause(vmm, In(kWait)).code(), Code::kUnavailable);
  EXPECT_EQ(driver_->Shutdown(vmm, In(kWait)).code(), Code::kUnavailable);
  api::StatusOr<Observation> o = driver_->Observe(vmm, In(kWait));
  EXPECT_EQ(o.status().code(), Code::kUnavailable) << "a Ready VM's VMM stopped answering";
  EXPECT_TRUE(driver_->Kill(vmm, In(kWait)).ok());
  EXPECT_EQ(identity_.Confirm(kKey, *handle).verdict, Verdict::kGone);
}

TEST_F(CloudHypervisorDriverTest, AHandleWithAnotherStartTimeIsNeverConfirmedSoNoCallIsMade) {
  MakeDriver();
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_TRUE(handle.ok()) << handle.status();
  const size_t requests = RequestLog().size();
  VmmHandle stale = *handle;
  stale.process.start_time_ticks += 1;
  const VmmIdentity::Check check = identity_.Confirm({"ns", "stale"}, stale);
  EXPECT_EQ(check.verdict, Verdict::kMismatch) << check.reason;
  EXPECT_FALSE(check.vmm.has_value()) << "nothing to call the driver with";
  EXPECT_EQ(RequestLog().size(), requests);
}

TEST_F(CloudHypervisorDriverTest, ACreateThatFailsKillsAndReapsTheVmmAndReturnsChsMessage) {
  MakeDriver({"--fake-fail", "vm.create=500"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_FALSE(handle.ok());
  EXPECT_EQ(handle.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(handle.status().message(), HasSubstr("vm.create: fake-cloud-hypervisor: injected"));
  api::StatusOr<std::optional<VmmHandle>> found = driver_->Rediscover(vm_dir_);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value()) << "the VMM Boot() spawned is still there";
  EXPECT_FALSE(fs::exists(vm_dir_ + "/ch.sock"));
}

// --- Shared dirs: virtiofsd sidecars -------------------------------------

// The sidecars' pids recorded in sidecars.json that are alive.
std::vector<pid_t> LiveSidecars(const std::string& vm_dir) {
  std::vector<pid_t> pids;
  const json record = json::parse(ReadFile(vm_dir + "/sidecars.json"), nullptr, false);
  if (!record.is_array()) return pids;
  LinuxProcFs proc;
  for (const json& s : record) {
    api::StatusOr<ProcessInfo> info = proc.ReadProcess(s.value("pid", 0));
    if (info.ok() && info->state != 'Z') pids.push_back(info->pid);
  }
  return pids;
}

TEST_F(CloudHypervisorDriverTest, SharedDirsGetAVirtiofsdSidecarEachThatCleanupEnds) {
  if (::geteuid() != 0) GTEST_SKIP() << "virtiofsd's sandbox needs root";
  MakeDriver();
  const std::string rw = dir_ + "/rw", ro = dir_ + "/ro";
  fs::create_directories(rw);
  fs::create_directories(ro);
  api::VmSpec spec = MinimalSpec();
  spec.shared_dirs = {{rw, "rw", false}, {ro, "ro", true}};
  ASSERT_TRUE(driver_->CheckSpec(spec).empty());
  api::StatusOr<VmmHandle> handle = Boot(spec);
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_EQ(LiveSidecars(vm_dir_).size(), 2u);
  EXPECT_TRUE(fs::exists(vm_dir_ + "/virtiofs-rw.sock"));
  EXPECT_TRUE(fs::exists(vm_dir_ + "/virtiofs-ro.sock"));
  const std::vector<pid_t> sidecars = LiveSidecars(vm_dir_);

  const ConfirmedVmm vmm = Confirm(*handle);
  ASSERT_TRUE(driver_->Kill(vmm, In(kWait)).ok());
  identity_.Forget(kKey);
  ASSERT_TRUE(driver_->Cleanup(*handle, In(kWait)).ok());
  handles_.clear();
  LinuxProcFs proc;
  for (pid_t pid : sidecars) {
    api::StatusOr<ProcessInfo> info = proc.ReadProcess(pid);
    EXPECT_TRUE(!info.ok() || info->state == 'Z') << "sidecar " << pid << " still runs";
  }
  EXPECT_FALSE(fs::exists(vm_dir_ + "/sidecars.json"));
  EXPECT_FALSE(fs::exists(vm_dir_ + "/virtiofs-rw.sock"));
}

TEST_F(CloudHypervisorDriverTest, ABootThatFailsEndsTheSidecarsItStarted) {
  if (::geteuid() != 0) GTEST_SKIP() << "virtiofsd's sandbox needs root";
  MakeDriver({"--fake-fail", "vm.boot=500"});
  const std::string rw = dir_ + "/rw";
  fs::create_directories(rw);
  api::VmSpec spec = MinimalSpec();
  spec.shared_dirs = {{rw, "rw", false}};
  api::StatusOr<VmmHandle> handle = Boot(spec);
  ASSERT_FALSE(handle.ok());
  EXPECT_TRUE(LiveSidecars(vm_dir_).empty());
  EXPECT_FALSE(fs::exists(vm_dir_ + "/sidecars.json"));
}

TEST_F(CloudHypervisorDriverTest, ABootThatFailsKillsTheVmm) {
  MakeDriver({"--fake-fail", "vm.boot=500"});
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_FALSE(handle.ok());
  EXPECT_THAT(handle.status().message(), HasSubstr("vm.boot:"));
  api::StatusOr<std::optional<VmmHandle>> found = driver_->Rediscover(vm_dir_);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST_F(CloudHypervisorDriverTest, AnApiThatNeverComesUpEndsBootByItsDeadline) {
  MakeDriver({"--fake-delay", "vmm.ping=60000"});
  const auto started = clock_.MonotonicNow();
  api::StatusOr<VmmHandle> handle = Boot(MinimalSpec(), milliseconds(1000));
  ASSERT_FALSE(handle.ok());
  EXPECT_EQ(handle.status().code(), Code::kDeadlineExceeded) << handle.status();
  EXPECT_LT(clock_.MonotonicNow() - started, milliseconds(5000));
  api::StatusOr<std::optional<VmmHandle>> found = driver_->Rediscover(vm_dir_);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST_F(CloudHypervisorDriverTest, AVmmThatExitsAtOnceIsAnErrorWithItsLastWords) {
  MakeDriver({"--fake-overflow", "sideways"});  // the fake refuses its flags
  api::StatusOr<VmmHandle> handle = Boot();
  ASSERT_FALSE(handle.ok());
  EXPECT_EQ(handle.status().code(), Code::kUnavailable) << handle.status();
  EXPECT_THAT(handle.status().message(), HasSubstr("exited at once (exited with status"));
}

TEST_F(CloudHypervisorDriverTest, AMissingBinaryIsNotFound) {
  CloudHypervisorOptions options;
  options.cloud_hypervisor_binary = dir_ + "/no-such-cloud-hypervisor";
  driver_ = std::make_unique<CloudHypervisorDriver>(clock_, proc_fs_, launcher_, options);
  ASSERT_TRUE(driver_->Start().ok());
  EXPECT_EQ(Boot().status().code(), Code::kNotFound);
}

// --- The contract ------------------------------------------------------------

TEST(ChVmConfigSchemaTest, EveryMappedFieldIsValidAgainstChsOpenApiSpec) {
  std::string error;
  std::unique_ptr<testing::fake_ch::OpenApiValidator> validator =
      testing::fake_ch::OpenApiValidator::Load(FAKE_CH_OPENAPI, error);
  ASSERT_NE(validator, nullptr) << error;
  api::VmSpec spec = MinimalSpec();
  spec.initramfs = "/img/initrd";
  spec.cmdline = "console=ttyS0 quiet";
  spec.root_disk = "/disks/root.raw";
  spec.data_disk = "/disks/data.qcow2";
  spec.seed_iso = "/disks/seed.iso";
  spec.networks = {{"tap0", "52:54:00:12:34:56"}, {"tap1", std::nullopt}};
  spec.shared_dirs = {{"/srv/web", "web", true}};
  spec.vsock = true;
  spec.memory_mb = 65536;
  for (const auto& [s, landlock] :
       {std::pair{MinimalSpec(), false}, std::pair{spec, false}, std::pair{spec, true}}) {
    const testing::fake_ch::OpenApiValidator::Result result = validator->ValidateRequestBody(
        "/vm.create", "put", ChVmConfig(s, "/s/vms/ns/vm-1", landlock));
    EXPECT_TRUE(result.ok()) << ::testing::PrintToString(result.violations);
    EXPECT_TRUE(result.warnings.empty()) << ::testing::PrintToString(result.warnings);
  }
}

}  // namespace
}  // namespace vmlet::drivers
