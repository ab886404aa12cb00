#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "drivers/host/linux_proc_fs.h"
#include "tests/support/files.h"
#include "tests/support/temp_dir.h"

namespace vmlet::drivers {
namespace {

using namespace std::string_literals;
using testing::ReadFile;

// A /proc/<pid>/stat line as Linux 6.1 writes it, with fields 4..21 and 23..
// filled with typical values.
std::string StatLine(const std::string& pid, const std::string& comm, const std::string& state,
                     const std::string& start_time) {
  return pid + " (" + comm + ") " + state +
         " 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 " + start_time +
         " 5591040 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n";
}

TEST(ParseProcStatTest, ReadsPidStateAndStartTime) {
  api::StatusOr<ProcessInfo> info = ParseProcStat(StatLine("1234", "sleep", "S", "98765"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 1234);
  EXPECT_EQ(info->state, 'S');
  EXPECT_EQ(info->start_time_ticks, 98765u);
  EXPECT_TRUE(info->cmdline.empty());
}

TEST(ParseProcStatTest, CommandNameWithSpacesDoesNotShiftFields) {
  api::StatusOr<ProcessInfo> info = ParseProcStat(StatLine("77", "my vmm 2 3", "R", "555"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 77);
  EXPECT_EQ(info->state, 'R');
  EXPECT_EQ(info->start_time_ticks, 555u);
}

TEST(ParseProcStatTest, CommandNameWithParenthesesIsSplitAtTheLastOne) {
  // comm is "a) b) c": the first and second ')' belong to it.
  api::StatusOr<ProcessInfo> info = ParseProcStat(StatLine("1234", "a) b) c", "S", "4242"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 1234);
  EXPECT_EQ(info->state, 'S');
  EXPECT_EQ(info->start_time_ticks, 4242u);
}

TEST(ParseProcStatTest, CommandNameMimickingFieldsCannotForgeThem) {
  // A process may name itself so that a first-')' parser would read state Z
  // and start time 7.
  api::StatusOr<ProcessInfo> info = ParseProcStat(
      StatLine("9", "x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 7 (", "S", "31"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 9);
  EXPECT_EQ(info->state, 'S');
  EXPECT_EQ(info->start_time_ticks, 31u);
}

TEST(ParseProcStatTest, CommandNameWithOpeningParenthesisAndNewline) {
  api::StatusOr<ProcessInfo> info = ParseProcStat(StatLine("5", ") (\n(", "D", "8"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state, 'D');
  EXPECT_EQ(info->start_time_ticks, 8u);
}

TEST(ParseProcStatTest, AcceptsTheLargestStartTime) {
  api::StatusOr<ProcessInfo> info =
      ParseProcStat(StatLine("4194304", "qemu", "S", "18446744073709551615"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 4194304);
  EXPECT_EQ(info->start_time_ticks, 18446744073709551615u);
}

TEST(ParseProcStatTest, AcceptsStatWithoutTrailingFields) {
  // Exactly 22 fields, no newline: enough.
  std::string stat = "12 (sh) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 66";
  api::StatusOr<ProcessInfo> info = ParseProcStat(stat);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->start_time_ticks, 66u);
}

TEST(ParseProcStatTest, RejectsMalformedStat) {
  const std::string full = StatLine("1234", "sleep", "S", "98765");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "malformed /proc stat: no command name in parentheses"},
      {"1234", "malformed /proc stat: no command name in parentheses"},
      {"1234 (sleep", "malformed /proc stat: no command name in parentheses"},
      {"1234 sleep) S", "malformed /proc stat: no command name in parentheses"},
      {"1234 (sleep)", "malformed /proc stat: no fields after the command name"},
      {"1234 (sleep)S 1", "malformed /proc stat: no fields after the command name"},
      {full.substr(0, full.find(" 98765")),
       "malformed /proc stat: only 21 fields, field 22 needed"},
      {"1234 (sleep) S\n", "malformed /proc stat: only 3 fields, field 22 needed"},
      {StatLine("abc", "sleep", "S", "1"), "malformed /proc stat: pid is not a positive number"},
      {StatLine("-1", "sleep", "S", "1"), "malformed /proc stat: pid is not a positive number"},
      {StatLine("0", "sleep", "S", "1"), "malformed /proc stat: pid is not a positive number"},
      {StatLine("99999999999", "sleep", "S", "1"),
       "malformed /proc stat: pid is not a positive number"},
      {StatLine("1", "sleep", "SS", "1"), "malformed /proc stat: state is not one character"},
      {StatLine("1", "sleep", "S", "12a"),
       "malformed /proc stat: start time (field 22) is not a number that fits 64 bits"},
      {StatLine("1", "sleep", "S", "-5"),
       "malformed /proc stat: start time (field 22) is not a number that fits 64 bits"},
      {StatLine("1", "sleep", "S", "18446744073709551616"),
       "malformed /proc stat: start time (field 22) is not a number that fits 64 bits"},
  };
  for (const auto& [stat, message] : cases) {
    SCOPED_TRACE(stat);
    api::StatusOr<ProcessInfo> info = ParseProcStat(stat);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(info.status(), api::Status::InvalidArgument(message));
  }
}

// LinuxProcFs over a /proc tree written by the test.
class ProcFsTest : public ::testing::Test {
 protected:
  void Write(const std::string& relative, const std::string& content) {
    std::filesystem::path path = std::filesystem::path(root_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << content;
  }

  const testing::TempDir root_dir_{"procfs"};
  const std::string root_ = root_dir_.path();
};

TEST_F(ProcFsTest, BootIdIsReadWithoutTheNewline) {
  Write("sys/kernel/random/boot_id", "4d71dcc5-5861-4859-8e5e-1a97b0a35a9d\n");
  api::StatusOr<std::string> id = LinuxProcFs(root_).BootId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, "4d71dcc5-5861-4859-8e5e-1a97b0a35a9d");
}

TEST_F(ProcFsTest, MissingBootIdIsNotFound) {
  api::StatusOr<std::string> id = LinuxProcFs(root_).BootId();
  ASSERT_FALSE(id.ok());
  EXPECT_TRUE(id.status().IsNotFound()) << id.status();
}

TEST_F(ProcFsTest, ReadProcessSplitsTheCommandLineAtNuls) {
  Write("42/stat", StatLine("42", "qemu-system-x86", "S", "1000"));
  // The empty argument is real; the final NUL only ends the last argument.
  Write("42/cmdline", "/usr/bin/qemu\0-qmp\0unix:/v/ns/a/qmp.sock,server=on\0\0last\0"s);
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, 42);
  EXPECT_EQ(info->state, 'S');
  EXPECT_EQ(info->start_time_ticks, 1000u);
  EXPECT_EQ(info->cmdline,
            (std::vector<std::string>{"/usr/bin/qemu", "-qmp", "unix:/v/ns/a/qmp.sock,server=on",
                                      "", "last"}));
}

TEST_F(ProcFsTest, CommandLineWithoutFinalNulKeepsItsLastArgument) {
  // A process that rewrote its argv area may leave no final NUL.
  Write("42/stat", StatLine("42", "vmm", "S", "1"));
  Write("42/cmdline", "vmm\0--dir=/v/ns/a"s);
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cmdline, (std::vector<std::string>{"vmm", "--dir=/v/ns/a"}));
}

TEST_F(ProcFsTest, ZombieHasStateZAndNoCommandLine) {
  Write("42/stat", StatLine("42", "qemu", "Z", "1000"));
  Write("42/cmdline", "");
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->state, 'Z');
  EXPECT_TRUE(info->cmdline.empty());
}

TEST_F(ProcFsTest, MissingPidIsNotFound) {
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_FALSE(info.ok());
  EXPECT_TRUE(info.status().IsNotFound()) << info.status();
}

TEST_F(ProcFsTest, ProcessThatVanishesBetweenTheReadsIsNotFound) {
  Write("42/stat", StatLine("42", "qemu", "S", "1000"));  // no cmdline any more
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_FALSE(info.ok());
  EXPECT_TRUE(info.status().IsNotFound()) << info.status();
}

TEST_F(ProcFsTest, MalformedStatIsInvalidArgument) {
  Write("42/stat", "42 (qemu) S 1 2\n");
  Write("42/cmdline", "qemu\0"s);
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status(),
            api::Status::InvalidArgument(root_ + "/42/stat: malformed /proc stat: only 5 fields, "
                                                 "field 22 needed"));
}

TEST_F(ProcFsTest, StatOfAnotherPidIsInternal) {
  Write("42/stat", StatLine("43", "qemu", "S", "1000"));
  Write("42/cmdline", "qemu\0"s);
  api::StatusOr<ProcessInfo> info = LinuxProcFs(root_).ReadProcess(42);
  ASSERT_FALSE(info.ok());
  EXPECT_EQ(info.status(), api::Status::Internal(root_ + "/42/stat names pid 43"));
}

TEST_F(ProcFsTest, NonPositivePidIsNotFound) {
  EXPECT_TRUE(LinuxProcFs(root_).ReadProcess(0).status().IsNotFound());
  EXPECT_TRUE(LinuxProcFs(root_).ReadProcess(-1).status().IsNotFound());
  EXPECT_TRUE(LinuxProcFs(root_).OpenPidFd(0).status().IsNotFound());
  EXPECT_TRUE(LinuxProcFs(root_).OpenPidFd(-1).status().IsNotFound());
}

TEST(ProcFsRealTest, BootIdIsTheHostsUuid) {
  api::StatusOr<std::string> id = LinuxProcFs().BootId();
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id + "\n", ReadFile("/proc/sys/kernel/random/boot_id"));
  ASSERT_EQ(id->size(), 36u);
  for (size_t i : {8, 13, 18, 23}) EXPECT_EQ((*id)[i], '-') << *id;
}

TEST(ProcFsRealTest, ParsesOwnStat) {
  api::StatusOr<ProcessInfo> info = ParseProcStat(ReadFile("/proc/self/stat"));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, ::getpid());
  EXPECT_EQ(info->state, 'R');  // it is reading its own stat
  EXPECT_GT(info->start_time_ticks, 0u);
}

TEST(ProcFsRealTest, ReadProcessOfSelfMatchesItsStatAndArgv) {
  api::StatusOr<ProcessInfo> stat = ParseProcStat(ReadFile("/proc/self/stat"));
  ASSERT_TRUE(stat.ok()) << stat.status();
  api::StatusOr<ProcessInfo> info = LinuxProcFs().ReadProcess(::getpid());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pid, ::getpid());
  EXPECT_EQ(info->start_time_ticks, stat->start_time_ticks);
  ASSERT_FALSE(info->cmdline.empty());
  EXPECT_NE(info->cmdline[0].find("vmlet_tests"), std::string::npos) << info->cmdline[0];
}

TEST(ProcFsRealTest, PidAbovePidMaxLimitIsNotFound) {
  constexpr pid_t kNeverAPid = (1 << 22) + 1;  // PID_MAX_LIMIT is 2^22
  EXPECT_TRUE(LinuxProcFs().ReadProcess(kNeverAPid).status().IsNotFound());
  api::StatusOr<UniqueFd> pidfd = LinuxProcFs().OpenPidFd(kNeverAPid);
  ASSERT_FALSE(pidfd.ok());
  EXPECT_TRUE(pidfd.status().IsNotFound()) << pidfd.status();
}

TEST(ProcFsRealTest, OpenPidFdOfSelfIsValid) {
  api::StatusOr<UniqueFd> pidfd = LinuxProcFs().OpenPidFd(::getpid());
  ASSERT_TRUE(pidfd.ok()) << pidfd.status();
  EXPECT_TRUE(pidfd->valid());
}

}  // namespace
}  // namespace vmlet::drivers
