// End to end, least privilege (`vmlet run --vmm-user`): the VMM never runs
// as root, runs under seccomp with no capabilities, and the files of the
// state directory are as tight as the VMs allow. The lifecycle and fault
// scenarios run with --vmm-user too (vm_lifecycle_e2e_test.cc,
// "qemu_as_nobody").
#include <grp.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "api/vm_key.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/e2e/vmm_backend.h"
#include "tests/support/proc_status.h"
#include "tests/support/vmlet_process.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

// `nobody`: the unprivileged user every Debian system has.
constexpr char kUser[] = "nobody";

struct FileMode {
  mode_t mode = 0;  // permission bits, with sticky
  uid_t uid = 0;
  gid_t gid = 0;
  bool ok = false;
};

FileMode ModeOf(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return {};
  return {static_cast<mode_t>(st.st_mode & 07777), st.st_uid, st.st_gid, true};
}

std::string Octal(mode_t mode) {
  std::ostringstream out;
  out << std::oct << mode;
  return out.str();
}

// The backend is the parameter: "qemu-as-nobody" or
// "cloud-hypervisor-as-nobody" (vmlet run --vmm-user nobody).
class LeastPrivilegeE2eTest : public E2eTest, public ::testing::WithParamInterface<std::string> {
 protected:
  LeastPrivilegeE2eTest() : E2eTest(MakeVmmBackend(GetParam())) {}

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "running VMMs as another user needs root";
    passwd* pw = ::getpwnam(kUser);
    ASSERT_NE(pw, nullptr) << "no user " << kUser;
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    E2eTest::SetUp();
  }

  uid_t uid_ = 0;
  gid_t gid_ = 0;
};

INSTANTIATE_TEST_SUITE_P(EveryDriver, LeastPrivilegeE2eTest,
                         ::testing::Values("qemu-as-nobody", "cloud-hypervisor-as-nobody"),
                         BackendParamName);

// What only the qemu driver does (refusing unreadable images before a
// launch, shared dirs through virtiofsd, --share-root).
class LeastPrivilegeQemuE2eTest : public LeastPrivilegeE2eTest {};

INSTANTIATE_TEST_SUITE_P(Qemu, LeastPrivilegeQemuE2eTest, ::testing::Values("qemu-as-nobody"),
                         BackendParamName);

// Given --vmm-user nobody, the VM boots to Ready with a VMM whose real,
// effective, saved and filesystem uids and gids are nobody's, with no
// capabilities and no_new_privs, confined further by the hypervisor's own
// means (QEMU: a seccomp filter, -sandbox on; Cloud Hypervisor: Landlock
// confined to the VM's directory, asked for in vm.create, which the stand-in
// checks against CH's OpenAPI schema); the state directory and the VM's
// directory are as tight as they can be, and the control socket (QMP's, CH's
// API socket) is the VMM's alone, 0600.
TEST_P(LeastPrivilegeE2eTest, TheVmmRunsAsTheVmmUserConfinedWithoutCapabilities) {
  const api::VmKey key{"demo", "least"};
  const pid_t pid = BootToReady(key);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pid});

  const std::string uid = std::to_string(uid_), gid = std::to_string(gid_);
  EXPECT_EQ(ProcStatusField(pid, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(ProcStatusField(pid, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(ProcStatusField(pid, "NoNewPrivs"), "1");
  EXPECT_EQ(ProcStatusField(pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(ProcStatusField(pid, "CapPrm"), "0000000000000000");
  EXPECT_EQ(ProcStatusField(pid, "CapBnd"), "0000000000000000");
  EXPECT_EQ(backend().MissingConfinementEvidence(pid, VmDir(key)), "");

  // Nobody else may list the state directory; the VMM user may only pass
  // through it to its VM's directory, which is root's, shared with the
  // VMM's group, sticky (the VMM cannot remove vmlet's files).
  for (const std::string& dir : {state_, state_ + "/vms", state_ + "/vms/demo"}) {
    const FileMode m = ModeOf(dir);
    ASSERT_TRUE(m.ok) << dir;
    EXPECT_EQ(Octal(m.mode), "711") << dir;
    EXPECT_EQ(m.uid, 0u) << dir;
  }
  const FileMode vm_dir = ModeOf(VmDir(key));
  EXPECT_EQ(Octal(vm_dir.mode), "1770");
  EXPECT_EQ(vm_dir.uid, 0u);
  EXPECT_EQ(vm_dir.gid, gid_);
  const std::string control_socket = backend().ControlSocket(VmDir(key));
  const FileMode socket = ModeOf(control_socket);
  ASSERT_TRUE(socket.ok) << control_socket;
  EXPECT_EQ(Octal(socket.mode), "600") << control_socket;
  EXPECT_EQ(socket.uid, uid_) << control_socket;
  for (const char* file : {"record.json", "status.json", "events.jsonl", "vmm.log"}) {
    const FileMode m = ModeOf(VmDir(key) + "/" + std::string(file));
    ASSERT_TRUE(m.ok) << file;
    EXPECT_EQ(m.mode & 077, 0u) << file << " is " << Octal(m.mode);
    EXPECT_EQ(m.uid, 0u) << file;
  }
  // The guest still powers off through ACPI, as asked.
  WriteManifest(key, Manifest(key, "  desiredState: Stopped\n"));
  ASSERT_TRUE(WaitPhase(key, "Stopped", kBootTimeout));
  EXPECT_EQ(backend().MissingPowerOffEvidence(VmDir(key)), "");
}

// Given a kernel the VMM user cannot read, no QEMU is launched: the VM
// waits in Starting with reason ImageNotReadable, is tried again with
// backoff (no restart, no crash), and boots once the file is readable.
TEST_P(LeastPrivilegeQemuE2eTest, AKernelTheVmmUserCannotReadIsImageNotReadableUntilFixed) {
  const api::VmKey key{"demo", "unreadable"};
  const std::string kernel = tmp_ + "/images/" + fs::path(TestGuest().kernel).filename().string();
  ASSERT_EQ(::chmod(kernel.c_str(), 0600), 0);
  WriteManifest(key, Manifest(key));
  StartVmlet();

  json status;
  ASSERT_TRUE(WaitFor(kBootTimeout, [&] {
    status = Status(key);
    return status.is_object() &&
           status.value("reason", "").rfind("ImageNotReadable: spec.kernel " + kernel, 0) == 0;
  })) << status.dump();
  EXPECT_EQ(Phase(status), "Starting");
  EXPECT_NE(status.value("reason", "").find("user nobody cannot read it (Permission denied)"),
            std::string::npos)
      << status.dump();
  EXPECT_TRUE(VmmPids(VmDir(key)).empty()) << "a QEMU was launched";
  // A second refused attempt, still without a crash or a restart.
  ASSERT_TRUE(WaitFor(kBootTimeout, [&] {
    status = Status(key);
    return status.is_object() &&
           status.value("reason", "").find("boot attempt 2 refused") != std::string::npos;
  })) << status.dump();
  EXPECT_EQ(CountEvents(key, {"ImageNotReadable"}), 1) << Events(key);
  EXPECT_EQ(CountEvents(key, {"Crashed", "BootFailed"}), 0) << Events(key);

  ASSERT_EQ(::chmod(kernel.c_str(), 0644), 0);
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  status = Status(key);
  EXPECT_EQ(status.value("restartCount", -1), 0) << status.dump();
  EXPECT_EQ(CountEvents(key, {"ImageReadable"}), 1) << Events(key);
}

// Given --share-root, a shared dir that escapes it through a symlink is
// refused by `vmlet validate` and by `vmlet run` (no QEMU, no virtiofsd, the
// error in the VM's status), while a shared dir inside boots.
TEST_P(LeastPrivilegeQemuE2eTest, ASharedDirEscapingItsShareRootThroughASymlinkIsRefused) {
  const std::string shares = tmp_ + "/shares";
  fs::create_directories(shares + "/data");
  fs::create_directory_symlink("/etc", shares + "/etc");
  const api::VmKey good{"demo", "inside"}, bad{"demo", "escape"};
  auto with_share = [&](const api::VmKey& key, const std::string& host_path) {
    return Manifest(key, "  sharedDirs:\n    - {hostPath: " + host_path + ", tag: data}\n");
  };
  WriteManifest(good, with_share(good, shares + "/data"));
  WriteManifest(bad, with_share(bad, shares + "/etc"));
  const std::string reason =
      "spec.sharedDirs[0].hostPath: resolves to \"/etc\", outside every --share-root (" + shares +
      ")";

  const CommandResult validate = RunToExit(
      VMLET_BINARY, {"validate", "--share-root", shares, ManifestPath(good), ManifestPath(bad)},
      tmp_ + "/validate.out", seconds(30));
  EXPECT_EQ(validate.exit_code, 1) << validate.output;
  EXPECT_NE(validate.output.find(ManifestPath(bad) + ":"), std::string::npos) << validate.output;
  EXPECT_NE(validate.output.find(reason), std::string::npos) << validate.output;

  StartVmlet({"--share-root", shares});
  ASSERT_TRUE(WaitPhase(good, "Ready", kBootTimeout));
  json status = Status(bad);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(ConditionStatus(status, "ManifestValid"), "False") << status.dump();
  EXPECT_NE(status.dump().find("outside every --share-root"), std::string::npos) << status.dump();
  EXPECT_TRUE(VmmPids(VmDir(bad)).empty());
  EXPECT_TRUE(VirtiofsdPids(VmDir(bad)).empty());
}

// Given --vmm-user and a VM with a read-write and a readOnly shared dir:
// each virtiofsd runs as the VMM user too (in a user namespace of its own,
// where its chroot sandbox and the read-only bind mount still work), its
// socket the user's, 0600; QEMU connects; the guest writes to the
// read-write dir (the file is the VMM user's) and cannot write to the
// readOnly one.
TEST_P(LeastPrivilegeQemuE2eTest, SharedDirsWorkWithAnUnprivilegedQemu) {
  const api::VmKey key{"demo", "shared"};
  const SharedDirs dirs = WriteSharedDirsManifest(key);
  // The VMM user's to write, as its disks are.
  ASSERT_EQ(::chown(dirs.rw.c_str(), uid_, gid_), 0);
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t qemu = VmmPid(Status(key));
  EXPECT_EQ(ProcStatusField(qemu, "Uid").substr(0, ProcStatusField(qemu, "Uid").find('\t')),
            std::to_string(uid_));
  for (const char* tag : {"rw", "ro"}) {
    const FileMode socket = ModeOf(VmDir(key) + "/virtiofs-" + std::string(tag) + ".sock");
    ASSERT_TRUE(socket.ok) << tag;
    EXPECT_EQ(Octal(socket.mode), "600") << tag;
    EXPECT_EQ(socket.uid, uid_) << tag;
  }
  const std::vector<pid_t> sidecars = VirtiofsdPids(VmDir(key));
  ASSERT_FALSE(sidecars.empty());
  const std::string uid = std::to_string(uid_);
  for (pid_t sidecar : sidecars) {
    EXPECT_EQ(ProcStatusField(sidecar, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid)
        << "virtiofsd " << sidecar;
  }
  ExpectGuestWroteOnlyToTheReadWriteDir(key, dirs);
  EXPECT_EQ(ModeOf(dirs.rw + "/written-by-guest").uid, uid_);
}

}  // namespace
}  // namespace vmlet::testing
