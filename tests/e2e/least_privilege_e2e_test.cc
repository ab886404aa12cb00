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
#include "tests/integration/vmlet_process.h"

namespace vmlet::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::seconds;

// `nobody`: the unprivileged user every Debian system has.
constexpr char kUser[] = "nobody";

// The value of a "Key:\t..." line of /proc/PID/status, or "".
std::string ProcStatus(pid_t pid, const std::string& key) {
  std::istringstream lines(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      std::string value = line.substr(key.size() + 1);
      value.erase(0, value.find_first_not_of(" \t"));
      return value;
    }
  }
  return "";
}

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

class LeastPrivilegeE2eTest : public E2eTest {
 protected:
  LeastPrivilegeE2eTest() : E2eTest(MakeQemuBackendAsUser(kUser)) {}

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

// Given --vmm-user nobody, the VM boots to Ready with a QEMU whose real,
// effective, saved and filesystem uids and gids are nobody's, under a
// seccomp filter (-sandbox on), with no capabilities and no_new_privs; the
// state directory and the VM's directory are as tight as they can be, and
// QMP's socket is the VMM's alone.
TEST_F(LeastPrivilegeE2eTest, QemuRunsAsTheVmmUserUnderSeccompWithoutCapabilities) {
  const api::VmKey key{"demo", "least"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t pid = VmmPid(Status(key));
  ASSERT_GT(pid, 0);
  ASSERT_EQ(VmmPids(VmDir(key)), std::vector<pid_t>{pid});

  const std::string uid = std::to_string(uid_), gid = std::to_string(gid_);
  EXPECT_EQ(ProcStatus(pid, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(ProcStatus(pid, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(ProcStatus(pid, "Seccomp"), "2");
  EXPECT_EQ(ProcStatus(pid, "NoNewPrivs"), "1");
  EXPECT_EQ(ProcStatus(pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(ProcStatus(pid, "CapPrm"), "0000000000000000");
  EXPECT_EQ(ProcStatus(pid, "CapBnd"), "0000000000000000");

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
  const FileMode qmp = ModeOf(VmDir(key) + "/qmp.sock");
  ASSERT_TRUE(qmp.ok);
  EXPECT_EQ(Octal(qmp.mode), "600") << "qmp.sock";
  EXPECT_EQ(qmp.uid, uid_) << "qmp.sock";
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
TEST_F(LeastPrivilegeE2eTest, AKernelTheVmmUserCannotReadIsImageNotReadableUntilFixed) {
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
TEST_F(LeastPrivilegeE2eTest, ASharedDirEscapingItsShareRootThroughASymlinkIsRefused) {
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
      "spec.sharedDirs[0].hostPath: resolves to \"/etc\", outside every --share-root (" +
      shares + ")";

  VmletProcess validate;
  const std::string out = tmp_ + "/validate.out";
  ASSERT_EQ(validate.Start(VMLET_BINARY,
                           {"validate", "--share-root", shares, ManifestPath(good), ManifestPath(bad)},
                           out),
            "");
  std::optional<int> exit = validate.WaitForExit(seconds(30));
  ASSERT_TRUE(exit.has_value());
  EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 1) << ReadFile(out);
  EXPECT_NE(ReadFile(out).find(ManifestPath(bad) + ":"), std::string::npos) << ReadFile(out);
  EXPECT_NE(ReadFile(out).find(reason), std::string::npos) << ReadFile(out);

  StartVmlet({"--share-root", shares});
  ASSERT_TRUE(WaitPhase(good, "Ready", kBootTimeout));
  json status = Status(bad);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(ConditionStatus(status, "ManifestValid"), "False") << status.dump();
  EXPECT_NE(status.dump().find("outside every --share-root"), std::string::npos)
      << status.dump();
  EXPECT_TRUE(VmmPids(VmDir(bad)).empty());
  EXPECT_TRUE(VirtiofsdPids(VmDir(bad)).empty());
}

class LeastPrivilegeChE2eTest : public E2eTest {
 protected:
  LeastPrivilegeChE2eTest()
      : E2eTest(MakeCloudHypervisorBackendAsUser(FAKE_CH_BINARY, FAKE_CH_OPENAPI, kUser)) {}

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

// Given --vmm-user nobody and the cloud-hypervisor driver (its stand-in),
// the VM boots to Ready with a VMM that has nobody's ids, no capabilities
// and no_new_privs; its API socket is 0600 and its own; vm.create asked for
// Landlock confined to the VM's directory (the stand-in checks the body
// against CH's OpenAPI schema).
TEST_F(LeastPrivilegeChE2eTest, CloudHypervisorRunsAsTheVmmUserWithoutCapabilities) {
  const api::VmKey key{"demo", "least-ch"};
  WriteManifest(key, Manifest(key));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t pid = VmmPid(Status(key));
  ASSERT_GT(pid, 0);
  const std::string uid = std::to_string(uid_), gid = std::to_string(gid_);
  EXPECT_EQ(ProcStatus(pid, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid);
  EXPECT_EQ(ProcStatus(pid, "Gid"), gid + "\t" + gid + "\t" + gid + "\t" + gid);
  EXPECT_EQ(ProcStatus(pid, "NoNewPrivs"), "1");
  EXPECT_EQ(ProcStatus(pid, "CapEff"), "0000000000000000");
  EXPECT_EQ(ProcStatus(pid, "CapBnd"), "0000000000000000");
  const FileMode vm_dir = ModeOf(VmDir(key));
  EXPECT_EQ(Octal(vm_dir.mode), "1770");
  EXPECT_EQ(vm_dir.gid, gid_);
  const FileMode socket = ModeOf(VmDir(key) + "/ch.sock");
  ASSERT_TRUE(socket.ok);
  EXPECT_EQ(Octal(socket.mode), "600");
  EXPECT_EQ(socket.uid, uid_);
  const HttpReply info = HttpGet("http://localhost/api/v1/vm.info", VmDir(key) + "/ch.sock");
  const json config = json::parse(info.body, nullptr, false);
  ASSERT_TRUE(config.is_object()) << info.error << info.body;
  EXPECT_EQ(config["config"].value("landlock_enable", false), true) << info.body;
  EXPECT_EQ(config["config"].value("landlock_rules", json()),
            json::parse(R"([{"path": ")" + VmDir(key) + R"(", "access": "rw"}])"))
      << info.body;
}

// Given --vmm-user and a VM with a read-write and a readOnly shared dir:
// each virtiofsd runs as the VMM user too (in a user namespace of its own,
// where its chroot sandbox and the read-only bind mount still work), its
// socket the user's, 0600; QEMU connects; the guest writes to the
// read-write dir (the file is the VMM user's) and cannot write to the
// readOnly one.
TEST_F(LeastPrivilegeE2eTest, SharedDirsWorkWithAnUnprivilegedQemu) {
  const api::VmKey key{"demo", "shared"};
  const std::string rw = tmp_ + "/share-rw", ro = tmp_ + "/share-ro";
  fs::create_directories(rw);
  fs::create_directories(ro);
  // The VMM user's to write, as its disks are.
  ASSERT_EQ(::chown(rw.c_str(), uid_, gid_), 0);
  WriteManifest(key, Manifest(key,
                              "  cmdline: \"console=ttyS0 panic=-1 vmlet.mount=rw vmlet.mount=ro "
                              "vmlet.write=rw vmlet.write=ro\"\n"
                              "  sharedDirs:\n"
                              "    - {hostPath: " +
                                  rw +
                                  ", tag: rw}\n"
                                  "    - {hostPath: " +
                                  ro + ", tag: ro, readOnly: true}\n"));
  StartVmlet();
  ASSERT_TRUE(WaitPhase(key, "Ready", kBootTimeout));
  const pid_t qemu = VmmPid(Status(key));
  EXPECT_EQ(ProcStatus(qemu, "Uid").substr(0, ProcStatus(qemu, "Uid").find('\t')),
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
    EXPECT_EQ(ProcStatus(sidecar, "Uid"), uid + "\t" + uid + "\t" + uid + "\t" + uid)
        << "virtiofsd " << sidecar;
  }
  const std::string serial = ReadFile(VmDir(key) + "/serial.log");
  EXPECT_NE(serial.find("VMLET_WRITE rw ok"), std::string::npos) << serial;
  EXPECT_NE(serial.find("VMLET_WRITE ro failed"), std::string::npos) << serial;
  EXPECT_EQ(ReadFile(rw + "/written-by-guest"), "written by the guest\n");
  EXPECT_EQ(ModeOf(rw + "/written-by-guest").uid, uid_);
  EXPECT_FALSE(fs::exists(ro + "/written-by-guest"));
}

}  // namespace
}  // namespace vmlet::testing
