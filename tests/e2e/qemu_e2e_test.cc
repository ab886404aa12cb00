// End to end, QEMU only: what the other drivers do not support yet. The
// scenarios every driver shares are in vm_lifecycle_e2e_test.cc.

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

class QemuE2eTest : public E2eTest {
 protected:
  QemuE2eTest() : E2eTest(MakeQemuBackend()) {}
};

// Given a VM with a read-write and a readOnly shared dir, vmlet starts one
// virtiofsd per dir before QEMU; the guest mounts both, can write to the
// read-write one and cannot write to the readOnly one (enforced on the
// host); deleting the VM ends the sidecars.
TEST_F(QemuE2eTest, SharedDirsAreServedBySidecarsAndReadOnlyIsEnforcedOnTheHost) {
  if (::geteuid() != 0) GTEST_SKIP() << "virtiofsd's sandbox needs root";
  const api::VmKey key{"demo", "shared"};
  const SharedDirs dirs = WriteSharedDirsManifest(key);
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  // One recorded sidecar per dir, each alive (with its default namespace
  // sandbox, virtiofsd forks a child of its own, so there may be more
  // processes than sidecars).
  const json sidecars = json::parse(ReadFile(VmDir(key) + "/sidecars.json"), nullptr, false);
  ASSERT_TRUE(sidecars.is_array()) << ReadFile(VmDir(key) + "/sidecars.json");
  ASSERT_EQ(sidecars.size(), 2u);
  const std::vector<pid_t> running = VirtiofsdPids(VmDir(key));
  for (const json& sidecar : sidecars) {
    EXPECT_NE(std::find(running.begin(), running.end(), sidecar.value("pid", 0)), running.end())
        << sidecar.dump();
  }
  ExpectGuestWroteOnlyToTheReadWriteDir(key, dirs);

  fs::remove(ManifestPath(key));
  EXPECT_TRUE(WaitFor(seconds(60), [&] { return !fs::exists(VmDir(key)); }));
  EXPECT_TRUE(WaitFor(seconds(10), [&] { return VirtiofsdPids(VmDir(key)).empty(); }));
  EXPECT_TRUE(VmmPids(VmDir(key)).empty());
}

}  // namespace
}  // namespace vmlet::testing
