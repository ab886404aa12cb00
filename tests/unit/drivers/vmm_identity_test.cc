#include "drivers/vmm_identity.h"

#include <gtest/gtest.h>

#include <csignal>
#include <functional>
#include <string>
#include <vector>

#include "tests/fakes/fake_proc_fs.h"

namespace vmlet::drivers {
namespace {

using testing::FakeProcFs;
using Verdict = VmmIdentity::Verdict;

constexpr pid_t kPid = 4242;
constexpr uint64_t kStart = 777;
const char kVmDir[] = "/var/lib/vmlet/vms/ns/a";

// How QemuDriver names a VM's directory on the command line.
std::vector<std::string> QemuCmdline(const std::string& vm_dir) {
  return {"/usr/bin/qemu-system-x86_64",
          "-name",
          "ns/a,debug-threads=on",
          "-qmp",
          "unix:" + vm_dir + "/qmp.sock,server=on,wait=off",
          "-serial",
          "file:" + vm_dir + "/serial.log"};
}

VmmHandle Handle(pid_t pid = kPid, uint64_t start = kStart, std::string vm_dir = kVmDir) {
  VmmHandle handle;
  handle.driver = "qemu";
  handle.process = {pid, start};
  handle.boot_id = FakeProcFs::kDefaultBootId;
  handle.vm_dir = vm_dir;
  handle.socket_path = vm_dir + "/qmp.sock";
  return handle;
}

class VmmIdentityTest : public ::testing::Test {
 protected:
  FakeProcFs proc_;
  VmmIdentity identity_{proc_};
  const api::VmKey key_{"ns", "a"};
};

TEST_F(VmmIdentityTest, ConfirmsTheProcessItLaunched) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kConfirmed);
  EXPECT_EQ(check.reason, "");
  ASSERT_TRUE(check.vmm.has_value());
  EXPECT_EQ(check.vmm->handle(), Handle());
  EXPECT_EQ(check.vmm->pidfd(), -1);  // the fake has no real processes
  EXPECT_EQ(identity_.mismatches(), 0u);
}

TEST_F(VmmIdentityTest, GoneWhenThePidIsFree) {
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason, "pid 4242 does not exist");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 0u);
}

TEST_F(VmmIdentityTest, GoneWhenTheProcessIsAZombie) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  proc_.MakeZombie(kPid);
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason, "pid 4242 has exited (zombie, not reaped)");
  EXPECT_FALSE(check.vmm.has_value());
}

TEST_F(VmmIdentityTest, GoneAfterARebootEvenWhenPidStartTimeAndCommandLineMatch) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  proc_.SetBootId("0b5e7c1d-0000-4000-8000-000000000002");
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason,
            "host rebooted since the VMM was launched (boot id "
            "0b5e7c1d-0000-4000-8000-000000000002, recorded "
            "6d1f7e0a-2b4c-4e7d-9a51-0c3f8b2e4d10)");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 0u);
  EXPECT_EQ(proc_.process_reads(), 0);  // the pid means nothing after a reboot
}

TEST_F(VmmIdentityTest, MismatchWhenThePidWasReusedWithAnotherStartTime) {
  // Even a process naming the same VM dir: it is not the one vmlet launched.
  proc_.AddProcess(kPid, 900, QemuCmdline(kVmDir));
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kMismatch);
  EXPECT_EQ(check.reason, "pid 4242 belongs to another process: start time 900, recorded 777");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 1u);
  EXPECT_EQ(proc_.pidfd_opens(), 0);
}

TEST_F(VmmIdentityTest, MismatchWhenTheCommandLineNamesAnotherVmDir) {
  proc_.AddProcess(kPid, kStart, QemuCmdline("/var/lib/vmlet/vms/ns/ab"));
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kMismatch);
  EXPECT_EQ(check.reason,
            "pid 4242 (start time 777) has a command line that does not name "
            "/var/lib/vmlet/vms/ns/a");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 1u);
}

TEST_F(VmmIdentityTest, MismatchWhenTheCommandLineNamesNoDir) {
  proc_.AddProcess(kPid, kStart, {"/bin/sleep", "600"});
  EXPECT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kMismatch);
  EXPECT_EQ(identity_.mismatches(), 1u);
}

TEST_F(VmmIdentityTest, EmptyCommandLineWithTheRecordedStartTimeIsUnknownNotConfirmed) {
  // The recorded process, still inside execve: not provable yet, not a stranger.
  proc_.AddProcess(kPid, kStart, {});
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kUnknown);
  EXPECT_EQ(check.reason, "pid 4242 (start time 777) has an empty command line (inside execve?)");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 0u);
}

TEST_F(VmmIdentityTest, CommandLineMustNameTheDirAsAWholePath) {
  const std::vector<std::string> names_it = {
      "/var/lib/vmlet/vms/ns/a",
      "/var/lib/vmlet/vms/ns/a/",
      "unix:/var/lib/vmlet/vms/ns/a/qmp.sock,server=on",
      "path=/var/lib/vmlet/vms/ns/a,readonly=on",
      "--api-socket=path=/var/lib/vmlet/vms/ns/a/ch.sock",
      "file=/var/lib/vmlet/vms/ns/ab/x,file=/var/lib/vmlet/vms/ns/a/disk.img",
  };
  const std::vector<std::string> does_not = {
      "/var/lib/vmlet/vms/ns/ab",
      "unix:/var/lib/vmlet/vms/ns/ab/qmp.sock,server=on",
      "/var/lib/vmlet/vms/ns/a.b/qmp.sock",
      "/var/lib/vmlet/vms/ns/a-2/qmp.sock",
      "/var/lib/vmlet/vms/ns/a_b",
      "/srv/var/lib/vmlet/vms/ns/a/qmp.sock",  // another state dir
      "x/var/lib/vmlet/vms/ns/a",
      "/var/lib/vmlet/vms/ns",
      "",
  };
  pid_t pid = 100;
  for (const std::string& arg : names_it) {
    SCOPED_TRACE(arg);
    proc_.AddProcess(++pid, kStart, {"/usr/bin/qemu-system-x86_64", arg});
    EXPECT_EQ(identity_.Confirm(key_, Handle(pid)).verdict, Verdict::kConfirmed);
  }
  for (const std::string& arg : does_not) {
    SCOPED_TRACE(arg);
    proc_.AddProcess(++pid, kStart, {"/usr/bin/qemu-system-x86_64", arg});
    EXPECT_EQ(identity_.Confirm(key_, Handle(pid)).verdict, Verdict::kMismatch);
  }
  EXPECT_EQ(identity_.mismatches(), does_not.size());
}

TEST_F(VmmIdentityTest, RecordedDirWithTrailingSlashStillMatches) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  EXPECT_EQ(identity_.Confirm(key_, Handle(kPid, kStart, std::string(kVmDir) + "/")).verdict,
            Verdict::kConfirmed);
}

TEST_F(VmmIdentityTest, RecordWithoutAVmDirIsAMismatch) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  EXPECT_EQ(identity_.Confirm(key_, Handle(kPid, kStart, "")).verdict, Verdict::kMismatch);
}

TEST_F(VmmIdentityTest, RecordWithoutAPidIsGone) {
  VmmIdentity::Check check = identity_.Confirm(key_, Handle(0));
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason, "the record names no process (pid 0)");
  EXPECT_EQ(proc_.process_reads(), 0);
}

TEST_F(VmmIdentityTest, UnreadableProcIsUnknownNeverAConfirmation) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  proc_.SetReadError(api::Status::PermissionDenied("hidepid=2"));
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kUnknown);
  EXPECT_EQ(check.reason, "cannot read the host's boot id: PermissionDenied: hidepid=2");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 0u);

  proc_.SetReadError(std::nullopt);
  EXPECT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
}

TEST_F(VmmIdentityTest, EveryMismatchIsCounted) {
  proc_.AddProcess(kPid, 900, QemuCmdline(kVmDir));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kMismatch);
  EXPECT_EQ(identity_.mismatches(), 3u);
}

TEST_F(VmmIdentityTest, ConfirmAfterExitIsGone) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  proc_.Exit(kPid);
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason, "pid 4242 does not exist");
}

TEST_F(VmmIdentityTest, PidReusedAfterConfirmationIsAMismatch) {
  // With a fake pidfd nothing pins the pid: every Confirm re-checks /proc.
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  proc_.ReusePid(kPid, 901, {"/usr/sbin/sshd", "-D"});
  VmmIdentity::Check check = identity_.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kMismatch);
  EXPECT_EQ(check.reason, "pid 4242 belongs to another process: start time 901, recorded 777");
  EXPECT_EQ(identity_.mismatches(), 1u);
}

TEST_F(VmmIdentityTest, FirstConfirmationOpensAPidFdAndLaterOnesReuseIt) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  // Checked, pidfd opened, checked again (the pid may have been reused in between).
  EXPECT_EQ(proc_.pidfd_opens(), 1);
  EXPECT_EQ(proc_.process_reads(), 2);
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  EXPECT_EQ(proc_.pidfd_opens(), 1);
  EXPECT_EQ(proc_.process_reads(), 3);
}

TEST_F(VmmIdentityTest, ForgetDropsTheHeldPidFd) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  identity_.Forget(key_);
  identity_.Forget(key_);  // idempotent
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  EXPECT_EQ(proc_.pidfd_opens(), 2);
}

TEST_F(VmmIdentityTest, ConfirmationForANewBootReplacesTheHeldOne) {
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  proc_.Exit(kPid);
  proc_.AddProcess(5000, 2000, QemuCmdline(kVmDir));
  VmmIdentity::Check check = identity_.Confirm(key_, Handle(5000, 2000));
  ASSERT_EQ(check.verdict, Verdict::kConfirmed);
  EXPECT_EQ(check.vmm->handle(), Handle(5000, 2000));
  EXPECT_EQ(proc_.pidfd_opens(), 2);
  ASSERT_EQ(identity_.Confirm(key_, Handle(5000, 2000)).verdict, Verdict::kConfirmed);
  EXPECT_EQ(proc_.pidfd_opens(), 2);
}

TEST_F(VmmIdentityTest, KeysAreHeldSeparately) {
  const api::VmKey other{"ns", "b"};
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  proc_.AddProcess(5000, 2000, QemuCmdline("/var/lib/vmlet/vms/ns/b"));
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  ASSERT_EQ(identity_.Confirm(other, Handle(5000, 2000, "/var/lib/vmlet/vms/ns/b")).verdict,
            Verdict::kConfirmed);
  identity_.Forget(other);
  ASSERT_EQ(identity_.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  EXPECT_EQ(proc_.pidfd_opens(), 2);
}

// Delegates to a FakeProcFs, running a hook just before OpenPidFd: a process
// table that changes between the check and pidfd_open.
class RacingProcFs final : public ProcFs {
 public:
  explicit RacingProcFs(FakeProcFs& inner) : inner_(inner) {}
  std::function<void()> before_open;

  api::StatusOr<std::string> BootId() const override { return inner_.BootId(); }
  api::StatusOr<ProcessInfo> ReadProcess(pid_t pid) const override {
    return inner_.ReadProcess(pid);
  }
  api::StatusOr<UniqueFd> OpenPidFd(pid_t pid) const override {
    if (before_open) before_open();
    return inner_.OpenPidFd(pid);
  }

 private:
  FakeProcFs& inner_;
};

TEST_F(VmmIdentityTest, PidReusedWhileThePidFdIsOpenedIsAMismatchAndNotHeld) {
  RacingProcFs racing(proc_);
  VmmIdentity identity(racing);
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  racing.before_open = [&] { proc_.ReusePid(kPid, 901, {"/usr/sbin/sshd", "-D"}); };
  VmmIdentity::Check check = identity.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kMismatch);
  EXPECT_EQ(check.reason, "pid 4242 belongs to another process: start time 901, recorded 777");
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity.mismatches(), 1u);

  // Nothing was held for the stranger: the next Confirm checks afresh.
  racing.before_open = nullptr;
  proc_.ReusePid(kPid, kStart, QemuCmdline(kVmDir));
  EXPECT_EQ(identity.Confirm(key_, Handle()).verdict, Verdict::kConfirmed);
  EXPECT_EQ(proc_.pidfd_opens(), 2);
}

TEST_F(VmmIdentityTest, ExitWhileThePidFdIsOpenedIsGone) {
  RacingProcFs racing(proc_);
  VmmIdentity identity(racing);
  proc_.AddProcess(kPid, kStart, QemuCmdline(kVmDir));
  racing.before_open = [&] { proc_.Exit(kPid); };
  VmmIdentity::Check check = identity.Confirm(key_, Handle());
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason, "pid 4242 exited while being checked");
  EXPECT_EQ(identity.mismatches(), 0u);
}

TEST_F(VmmIdentityTest, StartTwiceIsFailedPreconditionAndStopIsIdempotent) {
  ASSERT_TRUE(identity_.Start([](const api::VmKey&) {}).ok());
  api::Status again = identity_.Start([](const api::VmKey&) {});
  EXPECT_EQ(again.code(), api::Status::Code::kFailedPrecondition);
  identity_.Stop();
  identity_.Stop();
  ASSERT_TRUE(identity_.Start([](const api::VmKey&) {}).ok());  // restartable
}

TEST_F(VmmIdentityTest, SignalPidFdWithoutAPidFdIsFailedPrecondition) {
  EXPECT_EQ(SignalPidFd(-1, SIGKILL).code(), api::Status::Code::kFailedPrecondition);
}

}  // namespace
}  // namespace vmlet::drivers
