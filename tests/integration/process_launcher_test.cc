// PosixProcessLauncher against the real kernel: the processes it starts are
// real, short-lived children of the test, each ended and reaped by its pid.
#include "drivers/host/process_launcher.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace vmlet::drivers {
namespace {

namespace fs = std::filesystem;

class PosixProcessLauncherTest : public ::testing::Test {
 protected:
  // Blocks until `pid` (a child) has exited, through a pidfd, then reaps it.
  std::optional<ExitStatus> WaitAndReap(pid_t pid) {
    const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    EXPECT_GE(pidfd, 0);
    pollfd pfd{.fd = pidfd, .events = POLLIN, .revents = 0};
    EXPECT_EQ(::poll(&pfd, 1, 10000), 1) << "child " << pid << " did not exit within 10 s";
    ::close(pidfd);
    return launcher_.Reap(pid);
  }

  std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  PosixProcessLauncher launcher_;
  const testing::TempDir tmp_dir_{"launcher"};
  const std::string tmp_ = tmp_dir_.path();
};

TEST_F(PosixProcessLauncherTest, ExitStatusOfAChildIsReapedOnce) {
  api::StatusOr<pid_t> pid = launcher_.Spawn({{"/bin/sh", "-c", "exit 3"}, "", true});
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  std::optional<ExitStatus> status = WaitAndReap(*pid);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, (ExitStatus{false, 3}));
  EXPECT_EQ(status->Describe(), "exited with status 3");
  // Reaped already: no second status (the pid is free for others now).
  EXPECT_FALSE(launcher_.Reap(*pid).has_value());
}

TEST_F(PosixProcessLauncherTest, ChildKilledBySignalSaysWhich) {
  api::StatusOr<pid_t> pid = launcher_.Spawn({{"/bin/sh", "-c", "kill -KILL $$"}, "", true});
  ASSERT_TRUE(pid.ok());
  std::optional<ExitStatus> status = WaitAndReap(*pid);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, (ExitStatus{true, SIGKILL}));
  EXPECT_EQ(status->Describe(), "killed by signal 9 (SIGKILL)");
}

TEST_F(PosixProcessLauncherTest, RunningChildIsNotReaped) {
  api::StatusOr<pid_t> pid = launcher_.Spawn({{"/bin/sleep", "30"}, "", true});
  ASSERT_TRUE(pid.ok());
  EXPECT_FALSE(launcher_.Reap(*pid).has_value());
  ASSERT_EQ(::kill(*pid, SIGKILL), 0);
  EXPECT_EQ(WaitAndReap(*pid), (ExitStatus{true, SIGKILL}));
}

TEST_F(PosixProcessLauncherTest, AProcessThatIsNotAChildIsNeverReaped) {
  EXPECT_FALSE(launcher_.Reap(1).has_value());
  EXPECT_FALSE(launcher_.Reap(0).has_value());
}

TEST_F(PosixProcessLauncherTest, MissingProgramIsNotFound) {
  api::StatusOr<pid_t> pid = launcher_.Spawn({{tmp_ + "/no-such-program"}, "", true});
  ASSERT_FALSE(pid.ok());
  EXPECT_TRUE(pid.status().IsNotFound()) << pid.status().ToString();
}

TEST_F(PosixProcessLauncherTest, ChildRunsInItsOwnSessionWithOutputAppendedToTheLog) {
  const std::string log = tmp_ + "/out.log";
  std::ofstream(log) << "earlier\n";
  api::StatusOr<pid_t> pid = launcher_.Spawn(
      {{"/bin/sh", "-c", "echo sid=$(cut -d' ' -f6 /proc/$$/stat); echo err >&2"}, log, true});
  ASSERT_TRUE(pid.ok());
  ASSERT_EQ(WaitAndReap(*pid), (ExitStatus{false, 0}));
  // Field 6 of /proc/PID/stat is the session id: the child leads its own.
  EXPECT_EQ(Read(log), "earlier\nsid=" + std::to_string(*pid) + "\nerr\n");
}

TEST_F(PosixProcessLauncherTest, ChildStartsWithNoBlockedSignalsWhateverTheCallerBlocks) {
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &block, &old), 0);
  const std::string log = tmp_ + "/mask.log";
  api::StatusOr<pid_t> pid =
      launcher_.Spawn({{"/bin/grep", "SigBlk", "/proc/self/status"}, log, true});
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(pid.ok());
  ASSERT_EQ(WaitAndReap(*pid), (ExitStatus{false, 0}));
  EXPECT_EQ(Read(log), "SigBlk:\t0000000000000000\n");
}

TEST_F(PosixProcessLauncherTest, DescriptorsOfTheCallerDoNotLeakIntoTheChild) {
  const int leaky = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(leaky, 3);
  const std::string log = tmp_ + "/fds.log";
  api::StatusOr<pid_t> pid = launcher_.Spawn({{"/bin/ls", "/proc/self/fd"}, log, true});
  ::close(leaky);
  ASSERT_TRUE(pid.ok());
  ASSERT_EQ(WaitAndReap(*pid), (ExitStatus{false, 0}));
  // 0, 1, 2, and the descriptor `ls` opens to read the directory (3).
  EXPECT_EQ(Read(log), "0\n1\n2\n3\n");
}

}  // namespace
}  // namespace vmlet::drivers
