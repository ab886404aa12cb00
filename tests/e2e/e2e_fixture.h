#pragma once

// What every end-to-end test shares: `vmlet run` as a daemon process over a
// manifest directory in a temporary directory of the test's own, with one
// driver's VMMs (VmmBackend) booting VMs; and the ways an operator would look
// at the result: status.json, events.jsonl, the VM's files, and /proc.
//
// Processes: every vmlet is started by VmletProcess and ended by its recorded
// pid; every VMM (and virtiofsd sidecar) is found by its command line naming
// the test's temporary directory, and ended by that pid in TearDown. Waits
// poll a condition until a deadline; none sleeps a fixed time to let
// something happen.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/vmm_backend.h"
#include "tests/integration/vmlet_process.h"

namespace vmlet::testing {

// TCG boots of the test guest take ~3 s alone, longer on a busy CI host.
inline constexpr std::chrono::seconds kBootTimeout{90};

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// Writes `content` to a temporary file next to `path`, then renames it over
// `path`, so that a reader sees the old or the new content, never a part.
void WriteFileAtomically(const std::string& path, const std::string& content);

// Polls `done` every 25 ms until it returns true (true) or `timeout` has
// passed (false).
bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool()>& done);

// The test guest's kernel and initramfs (tests/guest/build-guest, run once
// per test binary; it caches under $VMLET_GUEST_DIR). `error` is "" when the
// two paths are set.
struct Guest {
  std::string kernel;
  std::string initramfs;
  std::string error;
};
const Guest& TestGuest();

// One HTTP GET (libcurl, 10 s at most): `status` is the HTTP status (0 when
// none came) and `error` libcurl's reason when the transfer failed.
struct HttpReply {
  long status = 0;
  std::string body;
  std::string error;
};
// GET `url`, over the Unix socket `unix_socket` when it is not empty.
HttpReply HttpGet(const std::string& url, const std::string& unix_socket = "");

// Live (not zombie) processes, other than this one, whose command line has
// an argument for which `matches` is true.
std::vector<pid_t> PidsWithArgument(const std::function<bool(const std::string&)>& matches);

// Live processes with an argument naming something under `dir`.
std::vector<pid_t> PidsNaming(const std::string& dir);

// Live virtiofsd processes with an argument naming a virtio-fs socket under
// `dir`: a VM's sidecars.
std::vector<pid_t> VirtiofsdPids(const std::string& dir);

// True while `pid` is a live (not zombie) process.
bool Alive(pid_t pid);

// The base of every e2e fixture: a temporary directory (manifests/, state/)
// per test, one vmlet process at a time, and the backend of the driver under
// test. TearDown ends vmlet, then every process naming the temporary
// directory (VMMs, sidecars), then the other processes the test started, and
// removes the directory; when the test failed, it first prints the end of
// vmlet's logs and of a few VMs' files.
class E2eTest : public ::testing::Test {
 protected:
  explicit E2eTest(VmmBackendPtr backend) : backend_(std::move(backend)) {}

  void SetUp() override;
  void TearDown() override;

  std::string ManifestPath(const api::VmKey& key) const;
  std::string VmDir(const api::VmKey& key) const;

  // A manifest of the test guest for the backend's driver; `extra` is
  // appended to its spec.
  std::string Manifest(const api::VmKey& key, const std::string& extra = "") const;
  void WriteManifest(const api::VmKey& key, const std::string& content);

  // Starts `vmlet run` (debug log, resync 5 s, the backend's flags, then
  // `extra_flags`; no metrics unless `extra_flags` has --metrics-addr),
  // logging to a file of its own (the last of logs_).
  void StartVmlet(const std::vector<std::string>& extra_flags = {});
  // SIGTERM to vmlet, and its exit within `timeout`.
  void StopVmlet(std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // status.json (a discarded value when it cannot be read or parsed).
  nlohmann::json Status(const api::VmKey& key) const;
  static std::string Phase(const nlohmann::json& status);
  static pid_t VmmPid(const nlohmann::json& status);
  static std::string ConditionStatus(const nlohmann::json& status, const std::string& type);
  // events.jsonl as it is on disk.
  std::string Events(const api::VmKey& key) const;
  // How many events of events.jsonl have one of `reasons`.
  int CountEvents(const api::VmKey& key, const std::vector<std::string>& reasons) const;

  // Waits until the VM's phase is `phase`; a failure is reported (with the
  // status) and returned as false.
  bool WaitPhase(const api::VmKey& key, const std::string& phase,
                 std::chrono::milliseconds timeout);

  // The backend's VMM processes for `dir`, and its hypervisor's run state.
  std::vector<pid_t> VmmPids(const std::string& dir) const { return backend_->VmmPids(dir); }
  std::string RunState(const std::string& vm_dir) const { return backend_->RunState(vm_dir); }

  VmmBackend& backend() { return *backend_; }

  std::string tmp_, manifests_, state_;
  VmletProcess vmlet_;
  std::vector<std::unique_ptr<VmletProcess>> others_;  // non-vmlet processes a test started
  std::vector<std::string> logs_;

 private:
  VmmBackendPtr backend_;
};

}  // namespace vmlet::testing
