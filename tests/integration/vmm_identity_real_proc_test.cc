// VmmIdentity against the host's real /proc and kernel pidfds, with
// processes the test spawns (`/bin/sleep 600`, whose argv[0] names a VM dir
// under a per-test temp dir, as a VMM's command line names its VM dir).
// Every spawned process is killed and reaped in TearDown by its recorded pid:
// safe, since an unreaped child's pid cannot be reused. Waits have deadlines.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "drivers/host/linux_proc_fs.h"
#include "drivers/host/real_clock.h"
#include "drivers/vmm_identity.h"
#include "tests/support/files.h"
#include "tests/support/temp_dir.h"

extern char** environ;

namespace vmlet::drivers {
namespace {

using Verdict = VmmIdentity::Verdict;
using testing::ReadFile;

constexpr int kDeadlineMs = 10'000;

// The value of `field` ("Pid", "SigPnd") in a /proc "Name:\tvalue" file.
std::string ProcField(const std::string& path, const std::string& field) {
  std::istringstream in(ReadFile(path));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field + ":\t", 0) == 0) return line.substr(field.size() + 2);
  }
  return "";
}

class VmmIdentityRealProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vm_dir_ = tmp_ + "/vms/ns/a";
    std::filesystem::create_directories(vm_dir_);
    api::StatusOr<std::string> boot_id = proc_.BootId();
    ASSERT_TRUE(boot_id.ok()) << boot_id.status();
    boot_id_ = *boot_id;
  }

  void TearDown() override {
    identity_.Stop();
    for (pid_t pid : unreaped_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  // Starts `sleep 600` whose command line names `vm_dir` (in argv[0]), with
  // default signal handling, so that any SIGTERM/SIGINT/SIGHUP/SIGKILL would
  // end it. Returns its handle as a launcher records it.
  VmmHandle Spawn(const std::string& vm_dir) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    std::string argv0 = vm_dir + "/qemu-system-x86_64";
    char arg1[] = "600";
    char* argv[] = {argv0.data(), arg1, nullptr};
    pid_t pid = 0;
    int err = ::posix_spawn(&pid, "/bin/sleep", nullptr, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    VmmHandle handle;
    if (err != 0) {
      ADD_FAILURE() << "posix_spawn: " << err;
      return handle;
    }
    unreaped_.insert(pid);
    // posix_spawn returns while the kernel is still inside execve: for a
    // moment the new command line reads empty (a launcher must wait too).
    RealClock clock;
    const auto deadline = clock.MonotonicNow() + std::chrono::milliseconds(kDeadlineMs);
    api::StatusOr<ProcessInfo> info = proc_.ReadProcess(pid);
    while (info.ok() && info->cmdline.empty() && clock.MonotonicNow() < deadline) {
      ::sched_yield();
      info = proc_.ReadProcess(pid);
    }
    if (!info.ok() || info->cmdline.empty()) {
      ADD_FAILURE() << "pid " << pid << " shows no command line: " << info.status();
      return handle;
    }
    handle.driver = "qemu";
    handle.process = {pid, info->start_time_ticks};
    handle.boot_id = boot_id_;
    handle.vm_dir = vm_dir;
    handle.socket_path = vm_dir + "/qmp.sock";
    return handle;
  }

  // Waits, up to the deadline, until `pid` has exited; does not reap it.
  static bool WaitExited(pid_t pid) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd.valid()) return false;
    pollfd pfd{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
    return ::poll(&pfd, 1, kDeadlineMs) == 1;
  }

  // SIGKILLs our child `pid` and waits until it is a zombie.
  void KillNoReap(pid_t pid) {
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ASSERT_TRUE(WaitExited(pid));
  }

  void KillAndReap(pid_t pid) {
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    Reap(pid);
  }

  // Reaps our child `pid`; returns its wait status.
  int Reap(pid_t pid) {
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, 0), pid);
    unreaped_.erase(pid);
    return status;
  }

  // The pid a pidfd of this process refers to, from /proc/self/fdinfo.
  static std::string PidOf(int pidfd) {
    return ProcField("/proc/self/fdinfo/" + std::to_string(pidfd), "Pid");
  }

  // `handle`'s process still runs, is the same process (start time), and no
  // signal is pending for it.
  void ExpectAliveAndUntouched(const VmmHandle& handle) {
    const pid_t pid = handle.process.pid;
    api::StatusOr<ProcessInfo> info = proc_.ReadProcess(pid);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_NE(info->state, 'Z');
    EXPECT_EQ(info->start_time_ticks, handle.process.start_time_ticks);
    const std::string status = "/proc/" + std::to_string(pid) + "/status";
    EXPECT_EQ(ProcField(status, "SigPnd"), "0000000000000000");
    EXPECT_EQ(ProcField(status, "ShdPnd"), "0000000000000000");
    siginfo_t exited{};
    EXPECT_EQ(::waitid(P_PID, pid, &exited, WEXITED | WNOHANG | WNOWAIT), 0);
    EXPECT_EQ(exited.si_pid, 0) << "pid " << pid << " has exited";
  }

  LinuxProcFs proc_;
  VmmIdentity identity_{proc_};
  const api::VmKey key_{"ns", "a"};
  const testing::TempDir tmp_dir_{"id"};
  const std::string tmp_ = tmp_dir_.path();
  std::string vm_dir_;
  std::string boot_id_;
  std::set<pid_t> unreaped_;

  // What the exit listener saw.
  // Starts identity_'s exit watcher, its listener recording into exited_.
  api::Status StartRecordingExits() {
    return identity_.Start([this](const api::VmKey& key) {
      {
        std::lock_guard lock(mu_);
        exited_.push_back(key);
      }
      cv_.notify_all();
    });
  }

  // Waits (holding `lock` on mu_) until exited_ has `count` keys, for
  // kDeadlineMs at most.
  bool AwaitExits(std::unique_lock<std::mutex>& lock, size_t count) {
    RealClock clock;
    return clock.WaitUntil(cv_, lock, clock.MonotonicNow() + std::chrono::milliseconds(kDeadlineMs),
                           [&] { return exited_.size() >= count; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<api::VmKey> exited_;  // guarded by mu_
};

TEST_F(VmmIdentityRealProcTest, ConfirmsALiveVmmAndHoldsAPidFdForIt) {
  VmmHandle handle = Spawn(vm_dir_);
  VmmIdentity::Check check = identity_.Confirm(key_, handle);
  ASSERT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
  ASSERT_TRUE(check.vmm.has_value());
  EXPECT_EQ(check.vmm->handle(), handle);
  ASSERT_GE(check.vmm->pidfd(), 0);
  EXPECT_EQ(PidOf(check.vmm->pidfd()), std::to_string(handle.process.pid));

  VmmIdentity::Check again = identity_.Confirm(key_, handle);
  ASSERT_EQ(again.verdict, Verdict::kConfirmed) << again.reason;
  EXPECT_EQ(again.vmm->pidfd(), check.vmm->pidfd());  // the same held pidfd
}

TEST_F(VmmIdentityRealProcTest, VmmKilledAndReapedIsGoneThroughTheHeldPidFd) {
  VmmHandle handle = Spawn(vm_dir_);
  ASSERT_EQ(identity_.Confirm(key_, handle).verdict, Verdict::kConfirmed);
  KillAndReap(handle.process.pid);
  VmmIdentity::Check check = identity_.Confirm(key_, handle);
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason,
            "pid " + std::to_string(handle.process.pid) + " has exited (its pidfd says so)");
  EXPECT_FALSE(check.vmm.has_value());
}

TEST_F(VmmIdentityRealProcTest, VmmKilledButNotReapedIsGone) {
  VmmHandle held = Spawn(vm_dir_);
  ASSERT_EQ(identity_.Confirm(key_, held).verdict, Verdict::kConfirmed);
  KillNoReap(held.process.pid);
  EXPECT_EQ(identity_.Confirm(key_, held).verdict, Verdict::kGone);

  // A zombie never confirmed before: /proc shows state Z.
  const api::VmKey other{"ns", "b"};
  VmmHandle zombie = Spawn(tmp_ + "/vms/ns/b");
  KillNoReap(zombie.process.pid);
  VmmIdentity::Check check = identity_.Confirm(other, zombie);
  EXPECT_EQ(check.verdict, Verdict::kGone);
  EXPECT_EQ(check.reason,
            "pid " + std::to_string(zombie.process.pid) + " has exited (zombie, not reaped)");
  EXPECT_EQ(identity_.mismatches(), 0u);
}

TEST_F(VmmIdentityRealProcTest, ExitListenerIsToldWhichVmmDied) {
  const api::VmKey other{"ns", "b"};
  VmmHandle a = Spawn(vm_dir_);
  VmmHandle b = Spawn(tmp_ + "/vms/ns/b");
  // `a` is held before the watcher starts, `b` after: both are watched.
  ASSERT_EQ(identity_.Confirm(key_, a).verdict, Verdict::kConfirmed);
  ASSERT_TRUE(StartRecordingExits().ok());
  ASSERT_EQ(identity_.Confirm(other, b).verdict, Verdict::kConfirmed);

  KillNoReap(b.process.pid);
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(AwaitExits(lock, 1));
    EXPECT_EQ(exited_, std::vector<api::VmKey>{other});
  }
  KillAndReap(a.process.pid);
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(AwaitExits(lock, 2));
    EXPECT_EQ(exited_, (std::vector<api::VmKey>{other, key_}));
  }
}

TEST_F(VmmIdentityRealProcTest, ForgottenVmmIsNotReportedWhenItDies) {
  const api::VmKey other{"ns", "b"};
  VmmHandle a = Spawn(vm_dir_);
  VmmHandle b = Spawn(tmp_ + "/vms/ns/b");
  ASSERT_TRUE(StartRecordingExits().ok());
  ASSERT_EQ(identity_.Confirm(key_, a).verdict, Verdict::kConfirmed);
  ASSERT_EQ(identity_.Confirm(other, b).verdict, Verdict::kConfirmed);
  identity_.Forget(key_);
  // `a` dies first, unwatched; `b`'s report proves the watcher ran past it.
  KillAndReap(a.process.pid);
  KillAndReap(b.process.pid);
  {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(AwaitExits(lock, 1));
  }
  identity_.Stop();  // no listener call after this
  std::lock_guard lock(mu_);
  EXPECT_EQ(exited_, std::vector<api::VmKey>{other});
}

// The reason VmmIdentity exists: a record whose pid now belongs to another
// live process must never lead to that process being signalled.
TEST_F(VmmIdentityRealProcTest, RecordPointingAtAnotherLiveProcessIsAMismatchAndItIsNotSignalled) {
  // The stranger even names this VM's dir (say, the VM's next VMM); the
  // record is of an older process that had the same pid.
  VmmHandle stranger = Spawn(vm_dir_);
  VmmHandle record = stranger;
  record.process.start_time_ticks = stranger.process.start_time_ticks - 1;

  for (int i = 0; i < 2; ++i) {  // a reconciler asks again; the answer holds
    VmmIdentity::Check check = identity_.Confirm(key_, record);
    EXPECT_EQ(check.verdict, Verdict::kMismatch);
    EXPECT_EQ(check.reason, "pid " + std::to_string(stranger.process.pid) +
                                " belongs to another process: start time " +
                                std::to_string(stranger.process.start_time_ticks) + ", recorded " +
                                std::to_string(record.process.start_time_ticks));
    // No ConfirmedVmm, so no driver call and no pidfd to signal through.
    EXPECT_FALSE(check.vmm.has_value());
  }
  EXPECT_EQ(identity_.mismatches(), 2u);
  ExpectAliveAndUntouched(stranger);
}

TEST_F(VmmIdentityRealProcTest, LiveProcessOfAnotherVmIsAMismatchAndItIsNotSignalled) {
  // Same pid and start time as recorded, but it serves ns/ab, not ns/a.
  VmmHandle stranger = Spawn(tmp_ + "/vms/ns/ab");
  VmmHandle record = stranger;
  record.vm_dir = vm_dir_;
  VmmIdentity::Check check = identity_.Confirm(key_, record);
  EXPECT_EQ(check.verdict, Verdict::kMismatch) << check.reason;
  EXPECT_FALSE(check.vmm.has_value());
  EXPECT_EQ(identity_.mismatches(), 1u);
  ExpectAliveAndUntouched(stranger);
}

TEST_F(VmmIdentityRealProcTest, RecordFromAnotherBootIsGoneAndTheProcessIsNotSignalled) {
  VmmHandle live = Spawn(vm_dir_);
  VmmHandle record = live;
  record.boot_id = "00000000-0000-4000-8000-000000000000";
  EXPECT_EQ(identity_.Confirm(key_, record).verdict, Verdict::kGone);
  ExpectAliveAndUntouched(live);
}

TEST_F(VmmIdentityRealProcTest, SignalPidFdKillsTheConfirmedVmmAndNoOther) {
  VmmHandle bystander = Spawn(tmp_ + "/vms/ns/b");
  VmmHandle handle = Spawn(vm_dir_);
  VmmIdentity::Check check = identity_.Confirm(key_, handle);
  ASSERT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
  ASSERT_TRUE(SignalPidFd(check.vmm->pidfd(), SIGKILL).ok());
  int status = Reap(handle.process.pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  ExpectAliveAndUntouched(bystander);
}

TEST_F(VmmIdentityRealProcTest, SignalPidFdAfterTheVmmWasReapedIsNotFound) {
  VmmHandle handle = Spawn(vm_dir_);
  VmmIdentity::Check check = identity_.Confirm(key_, handle);
  ASSERT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
  KillAndReap(handle.process.pid);
  api::Status signalled = SignalPidFd(check.vmm->pidfd(), SIGKILL);
  EXPECT_TRUE(signalled.IsNotFound()) << signalled;
}

TEST_F(VmmIdentityRealProcTest, ForgetClosesTheHeldPidFd) {
  VmmHandle handle = Spawn(vm_dir_);
  VmmIdentity::Check check = identity_.Confirm(key_, handle);
  ASSERT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
  const int pidfd = check.vmm->pidfd();
  identity_.Forget(key_);
  EXPECT_EQ(::fcntl(pidfd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
}

TEST_F(VmmIdentityRealProcTest, ConfirmationOfTheNextBootHoldsTheNewProcess) {
  VmmHandle first = Spawn(vm_dir_);
  ASSERT_EQ(identity_.Confirm(key_, first).verdict, Verdict::kConfirmed);
  KillAndReap(first.process.pid);
  VmmHandle second = Spawn(vm_dir_);
  VmmIdentity::Check check = identity_.Confirm(key_, second);
  ASSERT_EQ(check.verdict, Verdict::kConfirmed) << check.reason;
  EXPECT_EQ(PidOf(check.vmm->pidfd()), std::to_string(second.process.pid));
}

}  // namespace
}  // namespace vmlet::drivers
