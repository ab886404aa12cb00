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
#include "tests/support/files.h"
#include "tests/support/http_client.h"
#include "tests/support/test_guest.h"
#include "tests/support/vmlet_process.h"
#include "tests/support/vmlet_test.h"
#include "tests/support/wait_for.h"

namespace vmlet::testing {

// TCG boots of the test guest take ~3 s alone, longer on a busy CI host.
inline constexpr std::chrono::seconds kBootTimeout{90};

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

// The test name of a test parameterised by the name of a VmmBackend
// (MakeVmmBackend): "qemu-as-nobody" becomes "qemu_as_nobody".
std::string BackendParamName(const ::testing::TestParamInfo<std::string>& info);

// The base of every e2e fixture: vmlet's directories in a temporary
// directory of the test's own (VmletTest), one vmlet process at a time, and
// the backend of the driver under test. TearDown ends vmlet, then every
// process naming the temporary directory (VMMs, sidecars), then the other
// processes the test started; when the test failed, it also prints the end
// of vmlet's logs and of a few VMs' files.
class E2eTest : public VmletTest {
 protected:
  explicit E2eTest(VmmBackendPtr backend)
      : VmletTest("e2e", VMLET_BINARY), backend_(std::move(backend)) {}

  void SetUp() override;
  void TearDown() override;

  // manifests/<namespace>-<name>.yaml.
  std::string ManifestPath(const api::VmKey& key) const override;

  // A manifest of the test guest for the backend's driver; `extra` is
  // appended to its spec.
  std::string Manifest(const api::VmKey& key, const std::string& extra = "") const;

  // Writes the test guest's manifest of `key`, starts vmlet, and waits until
  // the VM is Ready. Returns its VMM's pid, or 0 (a test failure, reported)
  // when it did not get there.
  pid_t BootToReady(const api::VmKey& key);

  // A read-write and a readOnly shared dir, made under the test's directory,
  // and the manifest of `key` sharing both with the guest, whose init mounts
  // both and writes a file to each (tests/guest/init).
  struct SharedDirs {
    std::string rw;
    std::string ro;
  };
  SharedDirs WriteSharedDirsManifest(const api::VmKey& key);
  // What the guest of such a VM shows: its write to `dirs.rw` worked (the
  // file is there), its write to `dirs.ro` failed and left nothing.
  void ExpectGuestWroteOnlyToTheReadWriteDir(const api::VmKey& key, const SharedDirs& dirs);

  // Starts `vmlet run` (debug log, resync 5 s, the backend's flags, then
  // `extra_flags`; no metrics unless `extra_flags` has --metrics-addr),
  // logging to a file of its own (the last of logs_).
  void StartVmlet(const std::vector<std::string>& extra_flags = {});
  // SIGTERM to vmlet, and its exit within `timeout`.
  void StopVmlet(std::chrono::milliseconds timeout = std::chrono::seconds(30));

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

 private:
  VmmBackendPtr backend_;
};

}  // namespace vmlet::testing
